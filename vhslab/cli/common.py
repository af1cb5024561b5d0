"""Shared helpers of the command-line interface."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import typer
from rich.console import Console

console = Console(stderr=True)
DEBUG = {"on": False}  # set by `vhslab --debug`


def check_new_file(path, overwrite: bool, option: str = "--out") -> None:
    """Before any compute: an existing file is replaced only with --overwrite, a folder never, and
    the folder it goes in must be writable."""
    import os
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{option} {path} exists; nothing was changed (pass --overwrite to replace it)")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{option} {path}: the folder {parent} is not writable")


def comma_list(text: str | None, convert=str, option: str = "", what: str = "values") -> list:
    """Items of a comma list (blanks dropped), each through `convert`; a bad item names the option."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    try:
        return [convert(t) for t in items]
    except ValueError:
        raise ValueError(f"{option} is a comma list of {what}, got {text!r}") from None


def check_new_files(overwrite: bool, **paths) -> None:
    """`check_new_file` for each optional output, keyed by option name (`out=..., plot=...`)."""
    for name, path in paths.items():
        if path is not None:
            check_new_file(path, overwrite, "--" + name.replace("_", "-"))


def save_outputs(result: dict, ds, figure, out, plot) -> None:
    """Write the result dataset to `out` and `figure()` to `plot` (each if given), noting them in `result`."""
    if out is not None:
        ds.to_netcdf(out)
        result["out"] = str(out)
    if plot is not None:
        figure().savefig(plot, dpi=120, bbox_inches="tight")
        result["plot"] = str(plot)


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
