"""Imports go one way: cache_format <- export <- runtime <- bench (nothing imports to its right).

Every import statement is read from the source (function-level imports included), so a lazy
import inside a function cannot hide a dependency that goes the wrong way.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["cache_format", "export", "runtime", "bench"]


def _imported_packages(path: Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ORDER)


@pytest.mark.parametrize("package", ORDER[:-1])
def test_a_package_imports_nothing_downstream_of_it(package):
    downstream = set(ORDER[ORDER.index(package) + 1:])
    wrong = {str(p.relative_to(ROOT)): sorted(_imported_packages(p) & downstream)
             for p in sorted((ROOT / package).rglob("*.py"))}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_check_sees_lazy_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from runtime.heads import build_head\n    import bench.report\n")
    assert _imported_packages(source) == {"runtime", "bench"}
