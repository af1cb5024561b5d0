"""The package's layout rules (issue #35 "One instrument"), read from the AST of vhslab/ (nothing is imported).

- no import cycle between modules, counting imports inside functions too;
- no vhslab import inside a function (imports inside functions are for optional heavy third-party
  dependencies only; `INNER_IMPORTS_ALLOWED` lists the exceptions, with a reason each);
- a site name is parsed or built ("block." in code) only in vhslab/trace/site.py;
- modules <= 400 lines, functions <= 80 lines;
- every package `__init__` declares `__all__`, and every function or class named in an `__all__` has a
  docstring;
- no private name (`_x`) is imported from another module;
- vhslab/figures (plotting only) imports nothing of vhslab outside itself.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vhslab"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SITE_MODULE = "vhslab.trace.site"
# "module -> imported module": reason. Empty: every vhslab import sits at a module's top.
INNER_IMPORTS_ALLOWED: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(f): f for f in sorted(PKG.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(), filename=str(modules()[name]))


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _base(name: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom reads from."""
    if not node.level:
        return node.module or ""
    parts = name.split(".")
    keep = len(parts) - node.level + (1 if _is_package(name) else 0)
    return ".".join(parts[:keep] + ([node.module] if node.module else []))


def targets(name: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(vhslab module, imported name or None) for each thing an import statement reads: a name that is
    a submodule counts as an import of that submodule, any other name as one of the module it is read from."""
    mods = modules()
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name in mods]
    base = _base(name, node)
    out = []
    for a in node.names:
        if f"{base}.{a.name}" in mods:
            out.append((f"{base}.{a.name}", None))
        elif base in mods:
            out.append((base, a.name))
    return out


def _functions(module: ast.Module):
    return [n for n in ast.walk(module) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _imports(node: ast.AST):
    return [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]


@cache
def inner_imports() -> list[tuple[str, str, int]]:
    """(module, imported vhslab module, line) for each vhslab import inside a function."""
    found = set()
    for name in modules():
        for fn in _functions(tree(name)):
            for imp in _imports(fn):
                found.update((name, t, imp.lineno) for t, _ in targets(name, imp))
    return sorted(found)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle():
    edges = {name: set() for name in modules()}
    for name in modules():
        for imp in _imports(tree(name)):
            edges[name].update(t for t, _ in targets(name, imp) if t != name)
    cycles = _cycles(edges)
    assert not cycles, "import cycles (imports inside functions counted):\n" + "\n".join(map(str, cycles))


def test_no_vhslab_import_inside_a_function():
    found = [f"{m} -> {t} (line {line})" for m, t, line in inner_imports() if f"{m} -> {t}" not in INNER_IMPORTS_ALLOWED]
    assert not found, f"{len(found)} vhslab imports inside functions (move them to the module's top):\n" + "\n".join(found)


def test_inner_import_allow_list_is_current():
    used = {f"{m} -> {t}" for m, t, _ in inner_imports()}
    stale = sorted(set(INNER_IMPORTS_ALLOWED) - used)
    assert not stale, "allowed inner imports that no longer exist (remove them): " + ", ".join(stale)


_BUILD = re.compile(r"block\.(\{[^}]*\}|%\w)")


def _docstrings(module: ast.Module) -> set[int]:
    ids = set()
    for node in [module, *ast.walk(module)]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def site_name_code(module: ast.Module) -> list[int]:
    """Lines that parse or build a site name from "block.": the bare prefix "block.", a template
    "block.{}" / "block.%d", or an f-string piece ending in "block." before a value."""
    docs, lines = _docstrings(module), []
    for node in ast.walk(module):
        if isinstance(node, ast.JoinedStr):
            for part, nxt in zip(node.values, node.values[1:], strict=False):
                if isinstance(part, ast.Constant) and str(part.value).endswith("block.") and isinstance(nxt, ast.FormattedValue):
                    lines.append(node.lineno)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
              and (node.value == "block." or _BUILD.search(node.value))):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_site_names_are_parsed_and_built_in_one_place():
    found = {name: site_name_code(tree(name)) for name in modules() if name != SITE_MODULE}
    found = {k: v for k, v in found.items() if v}
    assert not found, f'"block." parsed or built outside {SITE_MODULE} (module: lines):\n' + "\n".join(
        f"{k}: {v}" for k, v in found.items())


def test_modules_are_short():
    long = {name: n for name, f in modules().items() if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_are_short():
    long = {f"{name}:{fn.lineno}:{fn.name}": n for name in modules() for fn in _functions(tree(name))
            if (n := fn.end_lineno - fn.lineno + 1) > MAX_FUNCTION_LINES}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def all_names(name: str) -> list[str] | None:
    """The module's `__all__` (a literal list or tuple of strings), or None."""
    for node in tree(name).body:
        targets_ = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets_):
            return list(ast.literal_eval(node.value))
    return None


def test_every_package_declares_all():
    missing = [name for name in modules() if _is_package(name) and all_names(name) is None]
    assert not missing, f"packages without __all__: {missing}"


def definition(name: str, attr: str, seen: frozenset = frozenset()) -> ast.AST | None:
    """The def/class node `attr` of module `name` is, following `from ... import` chains within vhslab;
    None where it is not a def or class of vhslab (a constant, a third-party object)."""
    if (name, attr) in seen or name not in modules():
        return None
    for node in tree(name).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == attr:
            return node
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                if (a.asname or a.name) == attr:
                    return definition(_base(name, node), a.name, seen | {(name, attr)})
    return None


def test_every_exported_name_has_a_docstring():
    missing = []
    for name in modules():
        for attr in all_names(name) or []:
            node = definition(name, attr)
            if node is not None and not ast.get_docstring(node):
                missing.append(f"{name}.{attr}")
    assert not missing, f"names in an __all__ without a docstring: {missing}"


def test_exported_names_exist():
    missing = []
    for name in modules():
        defined = {n.name for n in tree(name).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        for node in tree(name).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    defined.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        missing += [f"{name}.{attr}" for attr in all_names(name) or [] if attr not in defined]
    assert not missing, f"names in an __all__ that the module does not define or import: {missing}"


def _private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def test_no_private_name_imported_across_modules():
    found = []
    for name in modules():
        for imp in _imports(tree(name)):
            if isinstance(imp, ast.ImportFrom):
                found += [f"{name}:{imp.lineno} imports {t}.{a}" for t, a in targets(name, imp)
                          if a is not None and _private(a) and t != name]
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_figures_import_nothing_of_vhslab():
    found = []
    for name in modules():
        if name == "vhslab.figures" or name.startswith("vhslab.figures."):
            for imp in _imports(tree(name)):
                found += [f"{name}:{imp.lineno} -> {t}" for t, _ in targets(name, imp)
                          if t != "vhslab.figures" and not t.startswith("vhslab.figures.")]
    assert not found, "vhslab/figures is plotting only (arrays and tables in), yet imports vhslab:\n" + "\n".join(found)


@pytest.mark.parametrize("src, expected", [
    ('x = f"block.{i}"', [1]),
    ('x = s.removeprefix("block.")', [1]),
    ('x = "block.{}".format(i)', [1]),
    ('x = "block.10"', []),
    ('def f():\n    """Reads block.10 ("block." then a number)."""', []),
])
def test_site_name_code_detector(src, expected):
    assert site_name_code(ast.parse(src)) == expected


def test_cycle_finder():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
