"""The layout holds: imports run down the layers, no private name crosses a module, functions stay small.

The layer list is the one of ``docs/architecture.md``; a module may import from
its own unit (package or top-level module) and from units of lower layers only.
Imports under ``if TYPE_CHECKING:`` are for annotations and do not count.
"""

from __future__ import annotations

import ast
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "eprmetrics"


def _documented_layers() -> list[list[str]]:
    """The ```layers block of docs/architecture.md: lowest first; units on one line form one layer."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```layers\n", 1)[1].split("```", 1)[0]
    return [line.split() for line in block.splitlines() if line.strip()]


LAYERS = _documented_layers()
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}

# Public entry points with explicit keyword-only signatures (STYLE: no **kwargs bags): exempt from the
# parameter limit, not from the length limit.
PUBLIC_SIGNATURES = {"compute_pr", "compute_epr", "extract_features", "knn_graph", "generate", "make_pair", "fit"}
# Public constructors (module path in the package, name): torchmetrics' metric signature (FID/KID's arguments and ours)
PUBLIC_METHODS = {("integrations/torchmetrics.py", "__init__")}
MAX_LINES = 80  # per function, docstring excluded
MAX_PARAMS = 8  # per function, self/cls excluded


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    """``eprmetrics.neighbours.ann.base`` → ``neighbours``; the package itself → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    return skip


def _imports(path: pathlib.Path, root: pathlib.Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module imported, names imported) for every import in ``path``."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == root.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == root.name:
                out.append((node.lineno, target, [a.name for a in node.names]))
    return out


def import_violations(root: pathlib.Path = PACKAGE) -> list[str]:
    """Upward imports, imports between units of one layer, and private names taken from another module."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        unit = _unit(module)
        for line, target, names in _imports(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            tunit = _unit(target)
            if unit and tunit and tunit != unit:
                if tunit not in RANK or unit not in RANK:
                    problems.append(f"{where}: {module} → {target}: unit not in the layer list")
                elif RANK[tunit] >= RANK[unit]:
                    problems.append(f"{where}: {module} (layer {RANK[unit]}) imports {target} (layer {RANK[tunit]})")
            if unit and not tunit:
                problems.append(f"{where}: {module} imports the package face {target}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                problems.append(f"{where}: {module} takes private {private} from {target}")
    return problems


def size_violations(root: pathlib.Path = PACKAGE) -> list[str]:
    """Functions longer than MAX_LINES (docstring excluded) or with more than MAX_PARAMS parameters."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            where = f"{path.relative_to(root.parent)}:{node.lineno} {node.name}"
            lines = node.end_lineno - node.lineno + 1
            doc = (
                node.body[0]
                if node.body
                and isinstance(node.body[0], ast.Expr)
                and isinstance(getattr(node.body[0], "value", None), ast.Constant)
                and isinstance(node.body[0].value.value, str)
                else None
            )
            if doc is not None:
                lines -= doc.end_lineno - doc.lineno + 1
            if lines > MAX_LINES:
                problems.append(f"{where}: {lines} lines (> {MAX_LINES})")
            a = node.args
            params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
            params += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
            public = node.name in PUBLIC_SIGNATURES or (path.relative_to(root).as_posix(), node.name) in PUBLIC_METHODS
            if len(params) > MAX_PARAMS and not public:
                problems.append(f"{where}: {len(params)} parameters (> {MAX_PARAMS})")
    return problems


def test_every_unit_is_in_the_layer_list():
    units = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
    }
    assert units == set(RANK), f"layer list and folders differ: {sorted(units ^ set(RANK))}"


def test_imports_run_down_the_layers():
    assert import_violations() == []


def test_functions_are_small():
    assert size_violations() == []


@pytest.fixture
def planted(tmp_path):
    """A copy of the package to plant violations in."""
    copy = tmp_path / "eprmetrics"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize(
    "file,line,lazy,expected",
    [
        ("engine/tiles.py", "from ..estimators import run_exact", False, "imports eprmetrics.estimators"),
        ("neighbours/radii.py", "from ..result import KResult", True, "imports eprmetrics.result"),
        ("validation.py", "from .profiling import Stage", False, "imports eprmetrics.profiling"),  # same layer
        ("estimators/exact.py", "from ..api import _private", False, "takes private"),
    ],
)
def test_a_planted_violation_is_caught(planted, file, line, lazy, expected):
    assert import_violations(planted) == []
    path = planted / file
    text = path.read_text()
    if lazy:  # inside a function, where the old code hid its upward imports
        text += f"\n\ndef _planted():\n    {line}\n"
    else:
        i = text.index("\nfrom ") + 1
        text = text[:i] + line + "\n" + text[i:]
    path.write_text(text)
    found = import_violations(planted)
    assert any(expected in p for p in found), found


def test_a_planted_long_function_is_caught(planted):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES + 1))
    (planted / "report.py").write_text(
        (planted / "report.py").read_text() + f"\n\ndef _long(a, b, c, d, e, f, g, h, i):\n{body}"
    )
    found = size_violations(planted)
    assert any("_long" in p and "lines" in p for p in found) and any("_long" in p and "parameters" in p for p in found)
