"""The `vhslab` command."""

from __future__ import annotations

import sys

import typer

from vhslab.cli.analysis import attribute_cmd, geometry_cmd, patch_cmd, patch_timing_cmd
from vhslab.cli.common import DEBUG, guard
from vhslab.cli.demo import demo_cmd
from vhslab.cli.extract import extract_cmd, inspect_cmd
from vhslab.cli.probe import probe_cmd, probe_grid_cmd
from vhslab.cli.search import bench_cmd, bestofn_cmd, generate_cmd, prune_cmd
from vhslab.cli.verifier import verifier_app
from vhslab.cli.world import world_app

app = typer.Typer(help="vhslab: latent verifiers on diffusion transformers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(world_app, name="world")
app.add_typer(verifier_app, name="verifier")
app.command("demo")(guard(demo_cmd))
app.command("extract")(guard(extract_cmd))
app.command("inspect")(guard(inspect_cmd))
app.command("probe")(guard(probe_cmd))
app.command("probe-grid")(guard(probe_grid_cmd))
app.command("generate")(guard(generate_cmd))
app.command("bestofn")(guard(bestofn_cmd))
app.command("bench")(guard(bench_cmd))
app.command("prune")(guard(prune_cmd))
app.command("attribute")(guard(attribute_cmd))
app.command("patch")(guard(patch_cmd))
app.command("patch-timing")(guard(patch_timing_cmd))
app.command("geometry")(guard(geometry_cmd))


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="on an error, show the full traceback too")) -> None:
    """Errors are one line: exit code 2 for bad input, 1 for a fault."""
    DEBUG["on"] = debug

def run() -> None:
    """The `vhslab` entry point: usage errors too become one line (exit 2), not a box."""
    try:
        code = app(standalone_mode=False, prog_name="vhslab")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        # click's exceptions (vendored by typer): usage errors carry format_message and exit_code
        if not (hasattr(err, "format_message") and hasattr(err, "exit_code")):
            raise
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help(), file=sys.stderr)
        else:
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            print(f"error: {' '.join(err.format_message().split())}{where}", file=sys.stderr)
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
