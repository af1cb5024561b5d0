"""`vhslab demo`: the whole study on the shipped world, small (see `vhslab.demo`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vhslab.cli.common import console, emit, rounded, stdout
from vhslab.cli.options import JsonFlag, Progress
from vhslab.demo import run_demo


def demo_cmd(
    out: Path = typer.Option(..., "--out", help="a new folder for everything the demo writes (stores, results, figures)"),
    prompts: int = typer.Option(64, "--prompts", min=2, help="prompt rows of each suite (train, geneval-shapes)"),
    n_per_prompt: int = typer.Option(4, "--n-per-prompt", min=2, max=16, help="candidates per prompt row"),
    n_boot: int = typer.Option(200, "--n-boot", min=10, help="bootstrap draws of each interval"),
    overwrite: bool = typer.Option(False, help="replace --out if it holds an earlier demo"),
    progress: Progress = True,
    as_json: JsonFlag = False,
) -> None:
    """The whole VHS study on the shipped world in minutes: a small extraction, the probe sweep, the shipped
    verifier against the probe, Best-of-N at a matched budget against the vision path, one attribution and
    the figures; a summary table at the end. Writes only into --out (an unfinished demo there resumes)."""
    res = run_demo(out, n_prompts=prompts, n_per_prompt=n_per_prompt, n_boot=n_boot, overwrite=overwrite,
                   progress=progress, log=lambda line: console.print(line, markup=False, highlight=False))
    if as_json:
        emit(res.to_json(), True)
        return
    table = Table(title=f"vhslab demo: {prompts} prompt rows x {n_per_prompt} candidates (small: a demonstration, "
                  "not the README's measurements)", header_style="bold")
    for col in ("finding", "value", "95% interval (meanings)"):
        table.add_column(col)
    for row in res.rows():
        table.add_row(*row)
    stdout.print(table)
    stdout.print("seconds per stage: " + ", ".join(f"{k} {rounded(v, 1)}" for k, v in res.seconds.items()))
    stdout.print(f"wrote {res.out}: " + ", ".join(Path(p).name for p in res.files.values()))
