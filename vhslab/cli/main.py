"""The `vhslab` command."""

from __future__ import annotations

import typer

from vhslab.cli.extract import extract_cmd, inspect_cmd
from vhslab.cli.probe import probe_cmd
from vhslab.cli.world import world_app

app = typer.Typer(help="vhslab: latent verifiers on diffusion transformers.", no_args_is_help=True)
app.add_typer(world_app, name="world")
app.command("extract")(extract_cmd)
app.command("inspect")(inspect_cmd)
app.command("probe")(probe_cmd)

if __name__ == "__main__":
    app()
