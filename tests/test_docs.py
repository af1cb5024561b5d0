"""The documentation holds: the API reference builds with warnings as errors and gives every public name
a page; every shell command in README.md and docs/ is classified, and the quick ones run as written
(in a temporary folder, so nothing shipped is written over)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "results").glob("*.md"))]

# Commands run by test_quick_commands_run (each a few seconds to a minute on one core).
QUICK = {
    'vhslab world check --n 200 --json',
    'vhslab world gold --json',
    'vhslab world render "a photo of a blue star left of a red circle" -o x.png --upscale 4',
    'vhslab world samples -o grid.png',
    'vhslab generate "a photo of two red circles" --n 8 -o best.png --json',
}
# Every other documented command, with why it is not run here (the test fails on an unlisted one).
LONG = {
    "python3 -m venv": "a fresh install (.ci/run is exactly this)",
    "python -m pytest": "the test suite itself",
    "vhslab demo": "minutes: timed by hand, see README",
    "vhslab extract": "a store of thousands of generations (tests/test_extract.py runs small ones)",
    "vhslab inspect train.zarr": "needs the extracted train.zarr (tests/test_extract.py inspects small ones)",
    "accelerate launch": "two processes on two GPUs (tests/test_extract.py runs two CPU ranks)",
    "vhslab probe": "needs a store of thousands of generations (tests/test_probes_sweep.py runs small ones)",
    "pip download": "needs the network (the GPU training recipe, docs/world.md)",
    "pip install -q --no-index": "follows the pip download",
    "python3 -m vhslab.cli.main world train": "the world's training: hours",
    "vhslab world train": "the world's training: hours",
    "vhslab attribute": "minutes (tests/test_analysis_cli.py runs a small one)",
    "vhslab patch": "minutes (tests/test_analysis_cli.py runs a small one)",
    "vhslab geometry": "minutes (tests/test_analysis_cli.py runs a small one)",
    "python benchmarks/": "benchmarks: minutes to hours",
    "vhslab world robustness": "minutes",
    "vhslab bestofn": "the full budget table: an hour (tests/test_search_table.py runs a small one)",
    "vhslab bench": "minutes of timing (tests/test_search_bench.py runs a small one)",
    "bash benchmarks/device_check.sh": "needs a GPU",
    "vhslab verifier": "verifier training and evaluation on the default stores: minutes to hours",
    "vhslab world score": "minutes",
    "vhslab world teacher": "the teacher's recipe: 12 minutes (tests/test_world_teacher.py trains a tiny one)",
    "vhslab prune": "the pruning comparison: 12 minutes (tests/test_search_prune.py runs small ones)",
}


def commands(path: Path) -> list[str]:
    """The commands of the fenced bash blocks of a Markdown file: continuation lines joined, comments and
    `&` (background) dropped."""
    out = []
    for block in re.findall(r"^\s*```(?:bash|sh|shell)\n(.*?)^\s*```", path.read_text(), re.M | re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip().rstrip("&").strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    return out


ALL = sorted({c for f in DOC_FILES for c in commands(f)})


def test_every_documented_command_is_classified():
    loose = [c for c in ALL if c not in QUICK and not any(c.startswith(p) for p in LONG)]
    assert not loose, "commands in README.md / docs/ neither run here nor listed as long (add to QUICK or LONG):\n" + "\n".join(loose)
    missing = sorted(QUICK - set(ALL))
    assert not missing, f"QUICK lists commands no page documents any more: {missing}"


def test_links_stay_inside_the_repository_and_resolve():
    bad = []
    for f in DOC_FILES:
        for target in re.findall(r"\]\(([^)#\s]+)", f.read_text()):
            path = (f.parent / target).resolve()
            if re.match(r"[a-z]+:", target) or not path.is_relative_to(ROOT):
                bad.append(f"{f.name}: {target} (outside the repository)")
            elif not path.exists():
                bad.append(f"{f.name}: {target} (missing)")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(QUICK))
def test_quick_commands_run(command, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    shim = f'vhslab() {{ "{sys.executable}" -m vhslab.cli.main "$@"; }}\n'  # this checkout's vhslab
    r = subprocess.run(["bash", "-c", shim + command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (command, r.stderr[-1500:])
    if "--json" in command:
        assert r.stdout.strip().splitlines()[-1].startswith("{")


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the [test] extra installs sphinx")
    out = tmp_path / "html"
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs" / "api"),
                        str(out)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "docs" / "api"))
    try:
        import guide  # docs/api/guide.py
    finally:
        sys.path.pop(0)
    pages = {p.stem for p in (out / "generated").glob("*.html")}
    homes = set(guide.homes().values())
    assert homes and homes <= pages, f"public names without a page: {sorted(homes - pages)}"
    assert {f"{room}" for room in guide.ROOMS} <= {p.stem for p in (out / "rooms").glob("*.html")}
    assert {guide.page_name(ROOT, md) for md in guide.guide_sources(ROOT)} <= {p.stem for p in (out / "guide").glob("*.html")}
