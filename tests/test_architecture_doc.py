"""docs/architecture.md is true: every module, path and ``vaekit.`` name it shows in
backticks exists, it names every top-level module and wing of the package, and its table of
floors holds: no module imports from a floor above its own."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "vaekit"
DOC = (REPO / "docs" / "architecture.md").read_text()
# "Adding a model" walks through a toy model that does not exist, by design.
EXAMPLE = "wide_prior"

TICKS = re.findall(r"`([^`\n]+)`", DOC)
PATH = re.compile(r"^[a-z_][\w/.-]*(\.py|\.md|/)$")
NAME = re.compile(r"^vaekit(\.\w+)+(\(\))?$")


def _resolve(token: str) -> Path:
    """A path as the page writes it: under src/vaekit/ unless it starts with a top-level
    folder of the repository."""
    token = token.removeprefix("src/vaekit/")
    top = token.split("/")[0]
    return REPO / token if top in ("tests", "benchmarks", "docs", "src") else SRC / token


def test_every_path_it_names_exists():
    paths = [t for t in TICKS if PATH.match(t) and EXAMPLE not in t]
    assert len(paths) > 60  # the module map alone names more; a broken pattern shows here
    assert [t for t in paths if not _resolve(t).exists()] == []


def test_every_vaekit_name_it_shows_exists():
    names = [t.removesuffix("()") for t in TICKS if NAME.match(t) and EXAMPLE not in t]
    assert len(names) >= 5
    missing = []
    for name in names:
        parts = name.split(".")
        # the longest importable module prefix, then attributes
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        if obj is None:
            missing.append(name)
    assert missing == []


def _units() -> list[str]:
    """The package's top-level modules and wings, as the page names them."""
    units = [p.name for p in SRC.glob("*.py")]
    units += [f"{p.name}/" for p in SRC.iterdir() if (p / "__init__.py").is_file()]
    return sorted(units)


def test_it_names_every_module_and_wing_of_the_package():
    named = set(TICKS)
    assert [u for u in _units() if u not in named] == []


def _floors() -> dict[str, int]:
    section = DOC[DOC.index("## Layers") :]
    section = section[: section.index("\n## ", 4)]
    floors = {}
    for floor, cells in re.findall(r"^\| (\d+) \| (.*) \|$", section, re.M):
        cells = re.sub(r"\([^)]*\)", "", cells)  # a remark in brackets names no member
        for token in re.findall(r"`([^`]+)`", cells):
            floors[token.removesuffix("/").removesuffix(".py")] = int(floor)
    return floors


def _unit(module: str) -> str:
    """``vaekit.models.vae`` -> ``models``; ``vaekit`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(name: str) -> bool:
    return (SRC / f"{name}.py").is_file() or (SRC / name / "__init__.py").is_file()


def _imports(path: Path) -> list[str]:
    """The vaekit modules a file imports (at any depth, not those only for type checking)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("vaekit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "vaekit":  # from vaekit import rundir: a module, or the face
                found += [
                    f"vaekit.{a.name}" if _is_module(a.name) else "vaekit" for a in node.names
                ]
            elif node.module.startswith("vaekit."):
                found.append(node.module)
    return found


def test_no_module_imports_from_a_floor_above_its_own():
    floors = _floors()
    units = {u.removesuffix("/").removesuffix(".py") for u in _units()}
    assert units - {"configs"} <= set(floors), "a module is missing from the floors table"
    upward = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        for module in _imports(path):
            target = _unit(module)
            if target != own and floors[target] > floors[own]:
                upward.append(f"{rel.as_posix()} (floor {floors[own]}) imports {module}")
    assert upward == []
