"""Options that many commands share, declared once (typer `Annotated` aliases).

A command writes `as_json: JsonFlag = False` instead of repeating the `typer.Option(...)`; where the help
text names the command's own outputs, a small factory (`overwrite_flag`, `out_option`...) takes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JSON_HELP = "print one JSON object as the last line"


def json_flag(help: str = JSON_HELP):
    """`--json`: print the result as one JSON object (the last line)."""
    return Annotated[bool, typer.Option("--json", help=help)]


def overwrite_flag(help: str):
    """`--overwrite`: replace the command's own earlier outputs (the help names them)."""
    return Annotated[bool, typer.Option(help=help)]


def progress_flag(help: str = "show progress bars"):
    """`--progress/--no-progress`."""
    return Annotated[bool, typer.Option(help=help)]


def seed_option(help: str | None = None):
    """`--seed`: a root seed, >= 0."""
    return Annotated[int, typer.Option(min=0, help=help)]


def out_option(help: str, *short: str, required: bool = False):
    """`--out` (with `-o` where given): the file or folder a command writes."""
    return Annotated[Path, typer.Option(*short, "--out", help=help)] if required else \
        Annotated[Path | None, typer.Option(*short, "--out", help=help)]


def plot_option(help: str):
    """`--plot`: save the command's figure to this image."""
    return Annotated[Path | None, typer.Option(help=help)]


JsonFlag = json_flag()
Progress = progress_flag()
Seed = seed_option()
OverwriteOutPlot = overwrite_flag("replace --out / --plot if they exist")
OverwriteFile = overwrite_flag("replace the output file if it exists")
AllowIncomplete = Annotated[bool, typer.Option(
    "--allow-incomplete", help="use a store whose extraction did not finish (its written samples only; results say how many)")]

__all__ = ["AllowIncomplete", "JsonFlag", "OverwriteFile", "OverwriteOutPlot", "Progress", "Seed", "json_flag",
           "out_option", "overwrite_flag", "plot_option", "progress_flag", "seed_option"]
