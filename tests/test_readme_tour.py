"""The README's "Python tour" runs as written: the fenced block under that heading, executed as is."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_block() -> str:
    """The first ```python block after the heading "## Python tour"."""
    text = README.read_text()
    heading = re.search(r"^## Python tour\s*$", text, re.M)
    assert heading, "README.md has no '## Python tour' heading"
    block = re.search(r"^```python\n(.*?)^```", text[heading.end():], re.M | re.S)
    assert block, "no ```python block under '## Python tour'"
    return block.group(1)


def test_tour_uses_only_the_top_level_names():
    code = tour_block()
    assert re.findall(r"^(?:from|import) .*", code, re.M) == ["import vhslab"]
    assert 10 <= len(code.splitlines()) <= 20


def test_readme_tour_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "readme_tour"}
    exec(compile(tour_block(), "README.md (Python tour)", "exec"), scope)
    assert (tmp_path / "tour.zarr").is_dir()
    scores, best, maps = scope["scores"], scope["best"], scope["maps"]
    assert scores.shape == (32,) and ((scores > 0) & (scores < 1)).all()
    assert best.chosen == int(best.scores.argmax()) and len(best.scores) == 4
    assert maps["visual_ig"].shape[0] == 2
    assert "auroc" in scope["sweep"].summary()["verdict/linear"]
    assert capsys.readouterr().out.count("\n") >= 4
