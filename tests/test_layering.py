"""The package's imports form no circle: between files, and between top-level folders.

Every ``.py`` file under ``src/shiftalign`` is parsed with :mod:`ast` (nothing is imported) and each
import of a shiftalign module becomes an edge from that file to the imported file. Every import
counts, wherever it is written: at the top, inside a function, or under ``if TYPE_CHECKING:`` — a
circle that a function-local import hides still ties the two files together, and it breaks as soon
as someone moves the import up. Relative imports are resolved against the importing file.

What an import statement points at:

- ``import shiftalign.a.b``: the file of ``shiftalign.a.b`` (``a/b.py`` or ``a/b/__init__.py``);
- ``from .pkg import name``: ``pkg/name.py`` (or ``pkg/name/__init__.py``) when ``name`` is a
  submodule, else ``pkg/__init__.py`` (or ``pkg.py``), where ``name`` is defined;
- ``from . import name`` in the same way, relative to the importing file's package.

Importing ``a.b`` also runs ``a/__init__.py``; that implicit edge to the parent package is not
counted, since every file would then depend on its package's ``__init__`` and a package could not
import its own submodules at all.

The rule for registration. A registry package (``losses/``, ``rl/``, …) imports one file per entry
in its ``__init__.py`` so that importing the package registers every entry. Those are real edges,
so an entry file must not import the package ``__init__`` back: the registry and its spec class
live in a small module of their own (``losses/spec.py``) that both the ``__init__`` and the entry
files import. There is no exception in this test.

Two checks: no strongly connected set of more than one file, and no strongly connected set of more
than one top-level folder (``shiftalign/models`` and ``shiftalign/reweight`` are nodes; a top-level
single-file module such as ``config.py`` is its own node). A failure lists each circle with the
import statements (file:line) that make it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = "shiftalign"
ROOT = Path(__file__).resolve().parents[1] / "src" / PKG


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve_base(importer: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from X import ...`` reads from, or None when outside shiftalign."""
    if node.level == 0:
        return node.module
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    base = ".".join(package)
    return f"{base}.{node.module}" if node.module else base


def _in_package(name: str | None, pkg: str) -> bool:
    return name is not None and (name == pkg or name.startswith(pkg + "."))


def import_edges(root: Path = ROOT) -> dict[str, dict[str, list[int]]]:
    """importer module -> imported module -> line numbers of the import statements."""
    modules, pkg = _modules(root), root.name
    edges: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if _in_package(a.name, pkg)]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_base(name, is_package, node)
                if not _in_package(base, pkg):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # "import shiftalign.a.b.name" is not valid Python, but a base like "a.b" may name a
                # module that is not a file only through a typo; keep the longest existing prefix.
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name and node.lineno not in edges[name][target]:
                    edges[name][target].append(node.lineno)
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; the components of more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(out)


def _shortest_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One shortest circle through the component's first node, as a list of nodes (first repeated)."""
    members, start = set(comp), comp[0]
    prev: dict[str, str] = {}
    frontier, seen = [start], {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in members and w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _path(module: str) -> str:
    return str(_modules()[module].relative_to(ROOT.parent))


def _describe(graph: dict[str, set[str]], comps: list[list[str]], why) -> str:
    lines = []
    for comp in comps:
        lines.append("circle: " + " -> ".join(_shortest_cycle(graph, comp)))
        lines.append(f"  all members: {', '.join(comp)}")
        for a in comp:
            for b in sorted(graph[a] & set(comp)):
                lines.append(f"  {a} -> {b}: {why(a, b)}")
    return "\n".join(lines)


def test_no_import_cycle_between_files():
    edges = import_edges()
    graph = {a: set(bs) for a, bs in edges.items()}
    comps = strongly_connected(graph)

    def why(a, b):
        return ", ".join(f"{_path(a)}:{n}" for n in edges[a][b])

    assert not comps, "import circles between files:\n" + _describe(graph, comps, why)


def test_no_import_cycle_between_top_level_folders():
    edges = import_edges()
    graph: dict[str, set[str]] = defaultdict(set)
    sites: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a, bs in edges.items():
        for b, lines in bs.items():
            ta, tb = _top(a), _top(b)
            if ta != tb:
                graph[ta].add(tb)
                sites[ta, tb] += [f"{_path(a)}:{n}" for n in lines]
    comps = strongly_connected(graph)

    def why(a, b):
        s = sites[a, b]
        return ", ".join(s[:6]) + (f" (+{len(s) - 6} more)" if len(s) > 6 else "")

    assert not comps, "import circles between top-level folders:\n" + _describe(graph, comps, why)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The parser resolves absolute, relative, function-local and TYPE_CHECKING imports (a guard on the test)."""
    files = {
        "__init__.py": "",
        "top.py": "",
        "reg/__init__.py": "from .spec import REG\nfrom . import entry\n",
        "reg/spec.py": "REG = {}\n",
        "reg/entry.py": "from .spec import REG\nfrom .. import top\n",
        "user.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .reg import REG\n"
                    "def f():\n    import pkg.reg.entry\n    from .reg.spec import REG\n"),
    }
    for rel, text in files.items():
        (tmp_path / "pkg" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / rel).write_text(text)
    edges = import_edges(tmp_path / "pkg")
    assert {k: sorted(v) for k, v in edges.items() if v} == {
        "pkg.reg": ["pkg.reg.entry", "pkg.reg.spec"],
        "pkg.reg.entry": ["pkg.reg.spec", "pkg.top"],
        "pkg.user": ["pkg.reg", "pkg.reg.entry", "pkg.reg.spec"],
    }
    assert strongly_connected({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]
