"""The `vhslab` command."""

from __future__ import annotations

import typer

from vhslab.cli.common import DEBUG, guard
from vhslab.cli.extract import extract_cmd, inspect_cmd
from vhslab.cli.probe import probe_cmd
from vhslab.cli.world import world_app

app = typer.Typer(help="vhslab: latent verifiers on diffusion transformers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(world_app, name="world")
app.command("extract")(guard(extract_cmd))
app.command("inspect")(guard(inspect_cmd))
app.command("probe")(guard(probe_cmd))


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="on an error, show the full traceback too")) -> None:
    """Errors are one line: exit code 2 for bad input, 1 for a fault."""
    DEBUG["on"] = debug

if __name__ == "__main__":
    app()
