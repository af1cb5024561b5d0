"""Shared helpers of the command-line interface."""

from __future__ import annotations

import functools
import inspect
import json
import math
from pathlib import Path
from typing import Any

import psutil
import typer
from rich.console import Console
from rich.table import Table

from vhslab.errors import InputError, VhslabError
from vhslab.outputs import Output, claim, release, save_figure, save_netcdf
from vhslab.shapes.phrasing import parse_prompt
from vhslab.threads import info, use_threads

console = Console(stderr=True)  # progress, logs and errors
stdout = Console()  # results
DEBUG = {"on": False}  # set by `vhslab --debug`


def claim_outputs(command: str, overwrite: bool, inputs: dict | None = None, **paths) -> dict:
    """Before any compute: check and lock each output file (option name -> path; None is skipped) of
    `command` (see `vhslab.outputs.claim`): a path is written only if it is new or holds this command's
    own output, which is replaced only with --overwrite; outputs must not clash with each other or with
    the `inputs` (option -> path). Returns option name -> `Output`."""
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
        raise InputError(f"{option} is a comma list of {what}, got {text!r}") from None


def save_outputs(result: dict, ds, figure, outs: dict) -> None:
    """Write the result dataset to outs["out"] and `figure()` (drawn once) to outs["plot"] and outs["plot_pdf"]
    (each if claimed, atomically), noting them in `result`."""
    if "out" in outs:
        save_netcdf(outs["out"], ds)
        result["out"] = str(outs["out"].path)
    plots = [name for name in ("plot", "plot_pdf") if name in outs]
    fig = figure() if plots else None
    for name in plots:
        save_figure(outs[name], fig)
        result[name] = str(outs[name].path)


def guard(command):
    """Wrap a command: a `vhslab.errors.VhslabError` (bad input: InputError, MissingError, ExistsError or a
    room's subclass) becomes one readable line on stderr and exit code 2; any other exception is a fault:
    exit 1, one line naming its type. `vhslab --debug ...` shows the full rich traceback too. The command
    takes `--threads` too (`with_threads`)."""
    command = with_threads(command)

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
            raise
        except Exception as err:
            if DEBUG["on"]:
                console.print_exception(show_locals=False)
            code = 2 if isinstance(err, VhslabError) else 1
            text = " ".join(str(err).split()) or type(err).__name__
            if code == 1:
                text = f"{type(err).__name__}: {text}" + ("" if DEBUG["on"] else " (vhslab --debug ... shows the traceback)")
            console.print(f"error: {text}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None
        finally:
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


def rounded(value: Any, digits: int = 3) -> str:
    """A value as a person reads it: floats to `digits` significant decimals, a {"value", "ci"} cell as
    "v [lo, hi]", short lists inline."""
    value = _jsonable(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "ci", "n"}:
        ci = value.get("ci")
        text = rounded(value["value"], digits)
        return text + (f" [{rounded(ci[0], digits)}, {rounded(ci[1], digits)}]" if ci and None not in ci else "")
    if isinstance(value, list):
        text = "[" + ", ".join(rounded(v, digits) for v in value[:8]) + (", ..." if len(value) > 8 else "") + "]"
        return text
    return "" if value is None else str(value)


def flat_rows(result: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, rounded value) per leaf of a nested result; {"value", "ci"} cells stay one row."""
    rows = []
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not ("value" in value and set(value) <= {"value", "ci", "n"}):
            rows.extend(flat_rows(value, name + "."))
        else:
            rows.append((name, rounded(value)))
    return rows


def emit(result: dict[str, Any], as_json: bool, title: str = "") -> None:
    """Print a result to stdout: a rich table of rounded numbers, or (with --json) one JSON object as the
    last line; the thread count it ran with is added (`vhslab.threads.info`). Progress and logs go to stderr."""
    result = {**result, **{k: v for k, v in info().items() if k not in result}}
    if as_json:
        print(json.dumps(_jsonable(result)), flush=True)
        return
    table = Table(title=title or None, show_header=True, header_style="bold")
    table.add_column("result")
    table.add_column("value", overflow="fold")
    for key, value in flat_rows(result):
        table.add_row(key, value)
    stdout.print(table)


# --- resource and number guards, before any compute ------------------------------------------------
MAX_SIDE = 4096  # px: the largest image side a command writes (upscaled or not)
MAX_N = 256  # candidates per prompt a search may generate (`generate --n`, what `bestofn --budgets` buys)


def finite(param: typer.CallbackParam, value: float | None) -> float | None:
    """Callback of every float option: NaN and +-inf are refused as a usage error naming the option
    (typer's min= lets inf through and NaN compares false with any bound)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"expected a finite number, got {value}")
    return value


def positive(param: typer.CallbackParam, value: float | None) -> float | None:
    """`finite`, and > 0 (a learning rate, a strength that must act)."""
    value = finite(param, value)
    if value is not None and value <= 0:
        raise typer.BadParameter(f"expected a number > 0, got {value:g}")
    return value


def positive_number(text: str) -> float:
    """A finite number > 0 from text (for `comma_list`); anything else is a ValueError."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


def check_side(side: int, option: str) -> None:
    """An image side (after any upscaling) of at most MAX_SIDE px, checked before anything is generated."""
    if side > MAX_SIDE:
        raise InputError(f"{option}: the image would be {side} px on a side; at most {MAX_SIDE} px")


def check_prompt(prompt: str, option: str = "PROMPT"):
    """A prompt the shapes world can render (its PromptSpec); an empty one or one outside the world's
    grammar and vocabulary is refused, naming what is wrong."""
    if not prompt.strip():
        raise InputError(f"{option} is empty; give e.g. 'a photo of two red circles'")
    try:
        return parse_prompt(prompt)
    except ValueError as err:
        raise InputError(f"{option} {prompt!r}: the world renders prompts of the shapes world only "
                         f"(e.g. 'a photo of a blue star left of a red circle'): {err}") from None


def row_bytes(tokens: int, width: int, depth: int, factor: int = 6) -> int:
    """A rough estimate of the memory one row (sample, candidate) takes through a transformer: float32
    states of `tokens` x `width`, about `factor` of them alive per layer of `depth` (measured: the world's
    DiT, every block captured, grows by 1.8 MB a row; the estimate gives 1.77 MB)."""
    return 4 * tokens * width * depth * factor


def dit_row_bytes(pipe, height: int, width: int) -> int:
    """`row_bytes` of a diffusers DiT pipeline at an image size (0 when its config does not say)."""
    cfg = getattr(getattr(pipe, "transformer", None), "config", None)
    try:
        scale = int(pipe.vae_scale_factor) * int(getattr(cfg, "patch_size", 1) or 1)
        dim = int(getattr(cfg, "num_attention_heads", 0)) * int(getattr(cfg, "attention_head_dim", 0))
        return row_bytes((height // scale) * (width // scale), dim, int(getattr(cfg, "num_layers", 0)))
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return 0


def llm_row_bytes(llm, tokens: int) -> int:
    """`row_bytes` of a transformers LLM over `tokens` input tokens (0 when its config does not say)."""
    cfg = getattr(llm, "config", None)
    try:
        return row_bytes(tokens, int(cfg.hidden_size), int(cfg.num_hidden_layers))
    except (AttributeError, TypeError, ValueError):
        return 0


def verifier_row_bytes(llm, token_grid: int | None, ds) -> int:
    """`llm_row_bytes` of a verifier's input: its visual tokens (the pooled grid, or the store's tokens)
    and about 64 text tokens (system turn, question, prompt)."""
    visual = token_grid ** 2 if token_grid else int(ds.sizes.get("token", 0))
    return llm_row_bytes(llm, visual + 64)


def fit_batch(batch_size: int, rows: int, per_row: int = 0, option: str = "--batch-size") -> int:
    """`batch_size` clipped to the `rows` there are (with a note on stderr), refused when the batch's
    memory estimate (`per_row` bytes a row, see `row_bytes`; 0: no estimate) exceeds the memory
    available now."""
    if 1 <= rows < batch_size:
        console.print(f"note: {option} {batch_size} clipped to the {rows} rows there are", markup=False, highlight=False)
        batch_size = rows
    if per_row > 0:
        need, free = batch_size * per_row, psutil.virtual_memory().available
        if need > free:
            raise InputError(f"{option} {batch_size}: a batch needs about {need / 1e9:.1f} GB ({per_row / 1e6:.2f} MB a row, "
                             f"estimated), more than the {free / 1e9:.1f} GB available; lower {option}")
    return batch_size


# --- threads: one option on every command, one place that decides (vhslab.threads) ------------------
THREADS = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: measured fastest for the model's "
                       "size here: 1 for the world's small models, every core from 500M parameters)")


def with_threads(command):
    """`command` with the `--threads` option (THREADS) added to its signature, its thread count set
    (`vhslab.threads.use_threads`) before it runs; a command with its own `threads` (training) keeps it."""
    sig = inspect.signature(command, eval_str=True)  # the `Annotated` option aliases of `vhslab.cli.options`
    if "threads" in sig.parameters:
        return command

    @functools.wraps(command)
    def run(*args, threads: int | None = None, **kwargs):
        use_threads(threads)
        return command(*args, **kwargs)

    param = inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, default=THREADS, annotation=int)
    run.__signature__ = sig.replace(parameters=[*sig.parameters.values(), param])
    run.__annotations__ = {**getattr(command, "__annotations__", {}), "threads": int}
    return run
