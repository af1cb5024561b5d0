"""The `vhslab` command."""

from __future__ import annotations

import typer

from vhslab.cli.world import world_app

app = typer.Typer(help="vhslab: latent verifiers on diffusion transformers.", no_args_is_help=True)
app.add_typer(world_app, name="world")

if __name__ == "__main__":
    app()
