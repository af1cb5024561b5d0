"""`paper_figs.ipynb` is what its builder writes, and it runs in quick mode: every figure it names is written,
as PNG and PDF, into a folder given by VHSLAB_FIGS_OUT (never over the shipped docs/)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "paper_figs.ipynb"


def builder():
    spec = importlib.util.spec_from_file_location("build_paper_figs", ROOT / "benchmarks" / "build_paper_figs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_the_notebook_is_what_its_builder_writes():
    b = builder()
    assert sources(nbformat.read(NOTEBOOK, as_version=4)) == sources(b.build()), \
        "paper_figs.ipynb differs from benchmarks/build_paper_figs.py: run `python benchmarks/build_paper_figs.py`"
    assert len(b.FIGURES) == len(set(b.FIGURES)) >= 11
    markdown = [c.source for c in b.build().cells if c.cell_type == "markdown"]
    assert all("Data:" in m and "Supports:" in m for m in markdown[1:-1]), "each figure says its data and the number it supports"


@pytest.mark.slow
def test_the_notebook_runs_in_quick_mode_and_writes_every_figure(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    out = tmp_path / "figs"
    monkeypatch.setenv("VHSLAB_FIGS_MODE", "quick")
    monkeypatch.setenv("VHSLAB_FIGS_OUT", str(out))
    monkeypatch.setenv("VHSLAB_ROOT", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    names = builder().FIGURES
    for name in names:
        for suffix in (".png", ".pdf"):
            path = out / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 5000, f"{path.name} was not written"
    written = json.loads((out / "written.json").read_text())
    assert len(written) == 2 * len(names)
    assert not any(Path(p).parent == ROOT / "docs" for p in written)


def test_the_committed_notebook_shows_every_figure_once():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    images = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in nb.cells if c.cell_type == "code"]
    assert max(images) == 1, "a cell shows its figure twice (save() must not return the figure)"
    assert sum(images) == len(builder().FIGURES), "the committed notebook carries every figure's output (full mode)"
