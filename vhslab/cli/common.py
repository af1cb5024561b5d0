"""Shared helpers of the command-line interface."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console

console = Console(stderr=True)


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
        console.print(f"  {key}: {_jsonable(value)}")
