#!/usr/bin/env python3
"""The import graph of the suite (``benchmark/``, ``methods/``, ``baselines/``) against its layers.

Every ``.py`` file is a module; every import statement anywhere in it -- at module level, inside a
function, or under ``if TYPE_CHECKING:`` -- is an arrow to the module it names (``from pkg import
name`` points at ``pkg.name`` when that is a module, else at ``pkg``). Each module sits on the
floor that :data:`LAYERS` gives it (docs/architecture.md draws them); an arrow may point down or
sideways (the same floor), never up.

Run from the repository root::

    python scripts/import_graph.py            # the whole report
    python scripts/import_graph.py --problems # only what is wrong

It prints every module with its floor, line count and arrows, then the import cycles, the arrows
that go up a floor, the modules over :data:`MAX_LINES` lines and the modules no floor claims. The
exit status is 1 when there is a cycle, an upward arrow not in :data:`ALLOWED_UP`, a module over
the limit or a module without a floor; 0 otherwise. ``tests/test_architecture.py`` uses the same
table and the same analysis.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOTS = ("benchmark", "methods", "baselines")
MAX_LINES = 600

# floor -> (name, modules). "pkg.*" claims the package pkg and everything under it; a plain name
# claims that one module. Bottom to top; the longest matching entry wins.
LAYERS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("foundation", ("benchmark", "benchmark.errors", "benchmark.paths", "benchmark.io", "benchmark.device")),
    1: ("registry", ("benchmark.registry",)),
    2: ("data", ("benchmark.data.*", "benchmark.augment")),
    3: ("statistics", ("benchmark.stats.*",)),
    4: ("model machinery", ("benchmark.encoders", "benchmark.checkpoints", "benchmark.losses", "benchmark.training",
                            "benchmark.distributed", "benchmark.heal", "benchmark.method")),
    5: ("plug-ins", ("methods.*", "baselines.*")),
    6: ("protocols", ("benchmark.protocols.*",)),
    7: ("settings and rows", ("benchmark.config", "benchmark.results")),
    8: ("engine", ("benchmark.engine.*",)),
    9: ("report", ("benchmark.report.*",)),
    10: ("tools", ("benchmark.bench.*", "benchmark.tune.*", "benchmark.ablate", "benchmark.cachectl")),
    11: ("command line", ("benchmark.cli.*", "benchmark.__main__")),
}

# upward arrows accepted on purpose: (importer, imported) -> why
ALLOWED_UP: dict[tuple[str, str], str] = {}


@dataclass
class Graph:
    """The analysis of one tree: modules, arrows and what breaks the layering."""

    modules: dict[str, Path]
    lines: dict[str, int]
    arrows: dict[str, set[str]]
    local: set[tuple[str, str]]  # arrows made only by imports inside functions
    floors: dict[str, int | None]
    cycles: list[list[str]] = field(default_factory=list)
    upward: list[tuple[str, str]] = field(default_factory=list)
    big: list[tuple[str, int]] = field(default_factory=list)
    unassigned: list[str] = field(default_factory=list)

    @property
    def n_arrows(self) -> int:
        return sum(len(t) for t in self.arrows.values())

    def problems(self, allowed_up: dict[tuple[str, str], str] | None = None) -> list[str]:
        allowed = ALLOWED_UP if allowed_up is None else allowed_up
        out = [f"cycle among: {', '.join(c)}" for c in self.cycles]
        out += [f"upward arrow: {a} (floor {self.floors[a]}) -> {b} (floor {self.floors[b]})"
                for a, b in self.upward if (a, b) not in allowed]
        out += [f"module over {MAX_LINES} lines: {m} ({n})" for m, n in self.big]
        out += [f"module on no floor: {m}" for m in self.unassigned]
        return out


def floor_of(module: str, layers: dict[int, tuple[str, tuple[str, ...]]] = LAYERS) -> int | None:
    """The floor :data:`LAYERS` gives ``module`` (None: no entry claims it)."""
    best: tuple[int, int] | None = None  # (length of the matching entry, floor)
    for floor, (_, names) in layers.items():
        for name in names:
            base = name[:-2] if name.endswith(".*") else name
            hit = module == base or (name.endswith(".*") and module.startswith(base + "."))
            if hit and (best is None or len(base) > best[0]):
                best = (len(base), floor)
    return None if best is None else best[1]


def find_modules(root: Path, roots: tuple[str, ...] = ROOTS) -> dict[str, Path]:
    mods = {}
    for top in roots:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(modules imported anywhere, modules imported at module level) by one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level: set[str] = set()
    everywhere: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[: len(up) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in child.names] + [base]
            for name in names:
                target = _resolve(name, modules)
                if target and target != module:
                    everywhere.add(target)
                    if not inner:
                        top_level.add(target)
            visit(child, inner)

    visit(tree, False)
    return everywhere, top_level


def _cycles(arrows: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(arrows.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(arrows.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return sorted(out)


def analyse(root: str | Path = ".", roots: tuple[str, ...] = ROOTS,
            layers: dict[int, tuple[str, tuple[str, ...]]] = LAYERS, max_lines: int = MAX_LINES) -> Graph:
    """The import graph of the packages ``roots`` under ``root`` against ``layers``."""
    root = Path(root)
    modules = find_modules(root, roots)
    arrows: dict[str, set[str]] = defaultdict(set)
    local: set[tuple[str, str]] = set()
    for m, path in modules.items():
        everywhere, top = _imports(m, path, modules)
        arrows[m] = everywhere
        local |= {(m, t) for t in everywhere - top}
    lines = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules.items()}
    floors = {m: floor_of(m, layers) for m in modules}
    g = Graph(modules, lines, dict(arrows), local, floors)
    g.cycles = _cycles(g.arrows, sorted(modules))
    g.upward = sorted((a, b) for a, ts in g.arrows.items() for b in ts
                      if floors[a] is not None and floors[b] is not None and floors[b] > floors[a])
    g.big = sorted((m, n) for m, n in lines.items() if n > max_lines)
    g.unassigned = sorted(m for m, f in floors.items() if f is None)
    return g


def render(g: Graph, layers: dict[int, tuple[str, tuple[str, ...]]] = LAYERS) -> str:
    out = [f"{len(g.modules)} modules, {g.n_arrows} arrows ({len(g.local)} from imports inside functions), "
           f"{len({f for f in g.floors.values() if f is not None})} floors"]
    by_floor: dict[int | None, list[str]] = defaultdict(list)
    for m, f in g.floors.items():
        by_floor[f].append(m)
    for f in sorted(by_floor, key=lambda x: (x is None, x if x is not None else 0), reverse=True):
        title = f"floor {f}: {layers[f][0]}" if f is not None else "on no floor"
        out.append(f"\n{title}")
        for m in sorted(by_floor[f]):
            targets = ", ".join(t + ("*" if (m, t) in g.local else "") for t in sorted(g.arrows.get(m, ())))
            out.append(f"  {m} ({g.lines[m]} lines)" + (f" -> {targets}" if targets else ""))
    out.append("\n(* an import inside a function)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=".", help="repository root (default: the current folder)")
    p.add_argument("--problems", action="store_true", help="print only cycles, upward arrows, big and unplaced modules")
    args = p.parse_args(argv)
    g = analyse(args.root)
    if not args.problems:
        print(render(g))
        print()
    print(f"cycles: {len(g.cycles)}")
    for c in g.cycles:
        print(f"  among {', '.join(c)}")
    print(f"upward arrows: {len(g.upward)}")
    for a, b in g.upward:
        why = ALLOWED_UP.get((a, b))
        print(f"  {a} (floor {g.floors[a]}) -> {b} (floor {g.floors[b]})" + (f"  [allowed: {why}]" if why else ""))
    print(f"modules over {MAX_LINES} lines: {len(g.big)}")
    for m, n in g.big:
        print(f"  {m} ({n})")
    print(f"modules on no floor: {len(g.unassigned)}")
    for m in g.unassigned:
        print(f"  {m}")
    problems = g.problems()
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
