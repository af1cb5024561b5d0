"""Sphinx configuration of the API reference (offline: autodoc, autosummary, napoleon; no theme download).

Build: `sphinx-build -W -b html docs/api /tmp/vhslab-api` (warnings are errors; tests/test_docs.py runs it).
Each room's public names (its `__all__`) get a page each (autosummary); the guide pages (README,
docs/*.md, docs/results/*.md) are rendered from Markdown by markdown-it-py (see `guide.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import guide  # noqa: E402  (docs/api/guide.py: writes the room and guide pages)

project = "vhslab"
author = "vhslab"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon"]
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"  # signatures stay readable; types are in the docstrings
napoleon_google_docstring = True
napoleon_numpy_docstring = True
html_theme = "alabaster"
exclude_patterns = ["_build", "generated/*.rst.tmp"]
suppress_warnings = ["autosummary.import_cycle"]
root_doc = "index"

guide.write_pages(HERE)
templates_path = ["_templates"]


def setup(app):
    """The docstrings are plain text (see `guide.plain_docstring`); foreign inherited members are skipped."""
    app.connect("autodoc-process-docstring", guide.plain_docstring)
    app.connect("autodoc-skip-member", guide.skip_foreign)
