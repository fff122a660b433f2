"""The import rules of docs/architecture.md ("Tiers"), checked from the source with `ast` (function-local imports
included: the project defers heavy imports into functions, and a deferred import is still a dependency).

`violations(root)` returns one message per broken rule for the tree at `root` (a checkout, or a planted tree in a
test). Rules:
1. every module of `medgrpo_ray` lives in a package of a tier (no loose modules beside the root `__init__`);
2. an import goes to the same tier or a lower one (`actors` is tier 3, the top-level shells of the engines);
3. packages of one tier import each other without cycles;
4. `ray` only from tier 3 up; `vllm` only in `rollout`, `deepspeed` only in `learner`, `openai` only in `llm`, and
   those three only inside functions (importing the core never loads an engine);
5. tier 0 uses the standard library and OmegaConf only;
6. `launch/*.py` only run commands of `medgrpo_ray.cli`.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

TIERS: dict[str, int] = {
    "medvidbench": 0, "config": 0, "io": 0,
    "data": 1, "models": 1, "rewards": 1, "llm": 1, "judge": 1, "evaluation": 1, "grpo": 1, "sft": 1,
    "checkpoint": 1, "tracking": 1, "planning": 1, "curation": 1,
    "rollout": 2, "learner": 2, "weight_sync": 2,
    "actors": 3,
    "driver": 4,
    "workflows": 5,
    "cli": 6,
}
ENGINE_HOME = {"vllm": "rollout", "deepspeed": "learner", "openai": "llm"}
RAY_FROM_TIER = 3
TIER0_THIRD_PARTY = {"omegaconf", "yaml"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    path: Path
    line: int
    target: str  # imported module (or module.name for `from m import name`), dotted
    in_function: bool


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(dotted: str) -> str | None:
    """`medgrpo_ray.<pkg>...` -> pkg, `actors...` -> "actors", the root package -> "", else None (third party)."""
    parts = dotted.split(".")
    if parts[0] == "actors":
        return "actors"
    if parts[0] != "medgrpo_ray":
        return None
    return parts[1] if len(parts) > 1 else ""


def iter_imports(root: Path, path: Path) -> list[Import]:
    source = module_name(root, path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(source, path, child.lineno, a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = source.split(".") if is_pkg else source.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                found.extend(Import(source, path, child.lineno, f"{base}.{a.name}" if base else a.name, in_function)
                             for a in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def python_files(root: Path) -> list[Path]:
    return sorted(p for top in ("medgrpo_ray", "actors") for p in (root / top).rglob("*.py"))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once, from its smallest member)."""
    found, seen = [], set()

    def dfs(node: str, stack: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in stack:
                cycle = stack[stack.index(nxt):]
                key = tuple(sorted(cycle))
                if key not in seen:
                    seen.add(key)
                    found.append(cycle + [nxt])
            elif len(stack) < 16:
                dfs(nxt, stack + [nxt])

    for start in sorted(edges):
        dfs(start, [start])
    return found


def violations(root: str | Path) -> list[str]:
    root = Path(root)
    problems: list[str] = []
    same_tier: dict[str, set[str]] = {}
    for path in python_files(root):
        src_pkg = package_of(module_name(root, path))
        where = f"{path.relative_to(root)}"
        if path.parent == root / "medgrpo_ray" and path.name != "__init__.py":
            problems.append(f"{where}: a loose module in medgrpo_ray/; put it in a tiered package (docs/architecture.md)")
            continue
        if src_pkg not in TIERS and src_pkg != "":
            problems.append(f"{where}: package {src_pkg!r} has no tier; add it to docs/architecture.md and "
                            "tests/layer_rules.py TIERS")
            continue
        src_tier = TIERS.get(src_pkg, 0)
        for imp in iter_imports(root, path):
            at = f"{where}:{imp.line}"
            dst_pkg = package_of(imp.target)
            if dst_pkg is None:  # third party or standard library
                top = imp.target.split(".")[0]
                if top == "ray" and src_tier < RAY_FROM_TIER:
                    problems.append(f"{at}: imports ray in tier {src_tier} ({src_pkg}); ray belongs to tier "
                                    f"{RAY_FROM_TIER} and up (actors, driver, workflows, cli)")
                if top in ENGINE_HOME:
                    home = ENGINE_HOME[top]
                    if src_pkg != home and src_tier < RAY_FROM_TIER:
                        problems.append(f"{at}: imports {top} outside medgrpo_ray/{home}/ (its only home below tier 3)")
                    if src_tier < RAY_FROM_TIER and not imp.in_function:
                        problems.append(f"{at}: imports {top} at module level; import it inside the function "
                                        "that needs it (importing the core must not load an engine)")
                if src_tier == 0 and top not in sys.stdlib_module_names and top not in TIER0_THIRD_PARTY:
                    problems.append(f"{at}: tier 0 ({src_pkg}) imports {top}; tier 0 is the standard library and "
                                    "OmegaConf only")
                continue
            if dst_pkg == "" or dst_pkg == src_pkg:
                continue
            if dst_pkg not in TIERS:
                problems.append(f"{at}: imports {imp.target}, which is in no tiered package")
                continue
            dst_tier = TIERS[dst_pkg]
            if dst_tier > src_tier:
                problems.append(f"{at}: {src_pkg} (tier {src_tier}) imports {imp.target} ({dst_pkg}, tier "
                                f"{dst_tier}): imports go only to the same tier or lower")
            elif dst_tier == src_tier:
                same_tier.setdefault(src_pkg, set()).add(dst_pkg)
    for cycle in _cycles(same_tier):
        problems.append("import cycle between packages of one tier: " + " -> ".join(cycle))
    for path in sorted((root / "launch").glob("*.py")):
        for imp in iter_imports(root, path):
            pkg = package_of(imp.target)
            if pkg is not None and pkg != "cli":
                problems.append(f"launch/{path.name}:{imp.line}: imports {imp.target}; a launch script only runs a "
                                "command of medgrpo_ray.cli")
    return problems

