"""Shared helpers of the command-line interface."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console(stderr=True)
DEBUG = {"on": False}  # set by `vhslab --debug`


ALLOW_INCOMPLETE = typer.Option(False, "--allow-incomplete", help="use a store whose extraction did not finish "
                                "(its written samples only; results say how many)")


def claim_outputs(command: str, overwrite: bool, inputs: dict | None = None, **paths) -> dict:
    """Before any compute: check and lock each output file (option name -> path; None is skipped) of
    `command` (see `vhslab.outputs.claim`): a path is written only if it is new or holds this command's
    own output, which is replaced only with --overwrite; outputs must not clash with each other or with
    the `inputs` (option -> path). Returns option name -> `Output`."""
    from vhslab.outputs import Output, claim

    outs = {name: Output(Path(p), f"{command} --{name.replace('_', '-')}", "--" + name.replace("_", "-"))
            for name, p in paths.items() if p is not None}
    claim(list(outs.values()), overwrite, inputs)
    return outs


def comma_list(text: str | None, convert=str, option: str = "", what: str = "values") -> list:
    """Items of a comma list (blanks dropped), each through `convert`; a bad item names the option."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    try:
        return [convert(t) for t in items]
    except ValueError:
        raise ValueError(f"{option} is a comma list of {what}, got {text!r}") from None


def save_outputs(result: dict, ds, figure, outs: dict) -> None:
    """Write the result dataset to outs["out"] and `figure()` to outs["plot"] (each if claimed, atomically),
    noting them in `result`."""
    from vhslab.outputs import save_figure, save_netcdf

    if "out" in outs:
        save_netcdf(outs["out"], ds)
        result["out"] = str(outs["out"].path)
    if "plot" in outs:
        save_figure(outs["plot"], figure())
        result["plot"] = str(outs["plot"].path)


BAD_INPUT = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def guard(command):
    """Wrap a command: an exception becomes one readable line on stderr and exit code 2 when the
    input is wrong (a ValueError, e.g. PromptError, ProbeError, SpecError, StoreInputError; a
    missing file) or 1 for a fault; `vhslab --debug ...` shows the full rich traceback too."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
            raise
        except Exception as err:
            if DEBUG["on"]:
                console.print_exception(show_locals=False)
            code = 2 if isinstance(err, BAD_INPUT) else 1
            text = " ".join(str(err).split()) or type(err).__name__
            if code == 1:
                text = f"{type(err).__name__}: {text}" + ("" if DEBUG["on"] else " (vhslab --debug ... shows the traceback)")
            console.print(f"error: {text}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None
        finally:
            from vhslab.outputs import release

            release()  # the command's output locks

    return run


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit(result: dict[str, Any], as_json: bool, title: str = "") -> None:
    """Print a result: a readable table, or (with --json) one JSON object as the last line."""
    if as_json:
        print(json.dumps(_jsonable(result)), flush=True)
        return
    if title:
        console.print(f"[bold]{title}[/bold]")
    for key, value in result.items():
        console.print(f"  {key}: {_jsonable(value)}", markup=False, highlight=False)
