"""Writes the reference's source pages before Sphinx reads them: `rooms/<room>.rst` (an autosummary
table of the room's `__all__`, each name its own page) and `guide/<page>.rst` (a guide page of the
repository, Markdown rendered to HTML by markdown-it-py, links to other guide pages kept)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from markdown_it import MarkdownIt

ROOMS = ["vhslab", "vhslab.shapes", "vhslab.world", "vhslab.trace", "vhslab.data", "vhslab.probes",
         "vhslab.verifier", "vhslab.search", "vhslab.analysis", "vhslab.figures", "vhslab.testing", "vhslab.demo"]


def guide_sources(repo: Path) -> list[Path]:
    """The Markdown pages of the guide: README.md, docs/*.md and docs/results/*.md."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md")), *sorted((repo / "docs" / "results").glob("*.md"))]


def page_name(repo: Path, md: Path) -> str:
    """`readme`, `glossary`, `results-probes`...: the guide page's name."""
    rel = md.relative_to(repo).with_suffix("")
    return "readme" if rel.name == "README" else "-".join(rel.parts[1:])


def _html(repo: Path, md: Path) -> str:
    html = MarkdownIt("commonmark").enable("table").render(md.read_text())

    def link(m: re.Match) -> str:
        target = (md.parent / m.group(1)).resolve()
        if target.suffix == ".md" and target.exists():
            return f'href="{page_name(repo, target)}.html{m.group(2) or ""}"'
        return m.group(0)

    return re.sub(r'href="([^":#]+\.md)(#[^"]*)?"', link, html)


def homes() -> dict[int, str]:
    """id(object) -> the dotted name of its page: the first room (in ROOMS order, the top-level package
    last) whose `__all__` holds it; every public object gets exactly one page."""
    out = {}
    for room in [*ROOMS[1:], ROOMS[0]]:
        mod = importlib.import_module(room)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not name.startswith("__") and not isinstance(obj, (str, int, float, tuple, dict, frozenset)):
                out.setdefault(id(obj), f"{room}.{name}")
    return out


def room_page(room: str, home: dict[int, str]) -> str:
    """The rst of one room: its module docstring, an autosummary (one page each) of the names it is home
    to, and references to the pages of the names it re-exports."""
    mod = importlib.import_module(room)
    names = sorted(n for n in mod.__all__ if not n.startswith("__"))
    own = [n for n in names if home.get(id(getattr(mod, n)), f"{room}.{n}") == f"{room}.{n}"]
    body = [room, "=" * len(room), "", f".. automodule:: {room}", "", f".. currentmodule:: {room}", "",
            ".. autosummary::", "   :toctree: ../generated", "", *[f"   {n}" for n in own], ""]
    other = [n for n in names if n not in own]
    if other:
        body += ["Also exported here (documented in their room):", ""]
        body += [f"- ``{room}.{n}``: :py:obj:`{home[id(getattr(mod, n))]}`" for n in other] + [""]
    return "\n".join(body)


def write_pages(here: Path) -> None:
    """Write rooms/*.rst and guide/*.rst under `here` (the Sphinx source folder), only if changed."""
    repo = here.parents[1]
    home = homes()
    for room in ROOMS:
        _write(here / "rooms" / f"{room}.rst", room_page(room, home))
    for md in guide_sources(repo):
        name = page_name(repo, md)
        title = str(md.relative_to(repo))
        html = "\n".join("   " + line for line in _html(repo, md).splitlines())
        _write(here / "guide" / f"{name}.rst", f"{title}\n{'=' * len(title)}\n\n.. raw:: html\n\n{html}\n")


def plain_docstring(app, what, name, obj, options, lines) -> None:
    """autodoc hook: the docstrings are plain text with `code` in backticks, not reStructuredText: keep
    them so (escape |, * and _ref_ forms, flatten stray indentation); a constant shows its value's type."""
    if what in ("data", "attribute"):
        lines[:] = [f"A constant: ``{type(obj).__name__}``."]
        return
    out, prev_blank = [], True
    for line in lines:
        text = line.strip()
        text = text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_ ", "\\_ ")
        text = re.sub(r"(?<=\w)_(?=\W|$)", "\\_", text)
        if text.startswith(("- ", "\\* ")) and not prev_blank and out and not out[-1].startswith(("- ", "\\* ")):
            out.append("")
        out.append(text)
        prev_blank = not text
    lines[:] = out


def skip_foreign(app, what, name, obj, skip, options):
    """autodoc hook: members inherited from other libraries (sklearn, torch) are not ours to document."""
    module = getattr(obj, "__module__", None) or ""
    return True if module and not module.startswith("vhslab") else skip


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
