"""The imports point one way: tokenizer <- nbp <- lightning_modules.

`tokenizer/` imports nothing from `nbp` or `lightning_modules`; `nbp/` imports nothing from
`lightning_modules` and never imports Lightning, so the model, the sampler and evaluation work in any
PyTorch program. (The `nbp` command names its `train` and `demo` entry modules as strings and imports
them when asked, like a console-script entry point; that is not an import of the package.)
Every import statement counts, also those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "tokenizer": {"nbp", "lightning_modules", "lightning", "pytorch_lightning", "lightning_fabric"},
    "nbp": {"lightning_modules", "lightning", "pytorch_lightning", "lightning_fabric"},
}


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; relative imports resolved."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.append((node.lineno, ".".join([*base, node.module] if node.module else base)))
            else:
                found.append((node.lineno, node.module))
    return found


def violations(package: str, root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imported_modules(path, root):
            if module.partition(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    assert violations(package) == []


def test_the_rule_sees_imports_inside_functions_and_relative_ones(tmp_path):
    # A package with the imports the rule must catch, read by the same function as the real ones.
    (tmp_path / "nbp" / "sub").mkdir(parents=True)
    (tmp_path / "nbp" / "sub" / "probe.py").write_text(
        "import torch\ndef f():\n    import lightning.pytorch\n    from ...lightning_modules import cli\n"
        "    from .. import model\n")
    assert violations("nbp", tmp_path) == ["nbp/sub/probe.py:3 imports lightning.pytorch",
                                           "nbp/sub/probe.py:4 imports lightning_modules"]
