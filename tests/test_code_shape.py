"""The house style's limits on size (functions under about 50 lines, a module per idea),
checked so that they hold without a reviewer counting: no function or method of the packages'
library code over 50 lines, and no runtime module over 300 lines (runtime is where modules
grew past one idea before). Benchmark and test files (test_*.py, conftest.py) are exempt.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cache_format", "export", "runtime", "bench")
MAX_FUNCTION_LINES = 50
MAX_RUNTIME_MODULE_LINES = 300


def library_modules(package: str) -> list:
    return [p for p in sorted((ROOT / package).rglob("*.py"))
            if not p.name.startswith("test_") and p.name != "conftest.py"]


def function_lengths(path: Path) -> list:
    """(qualified name, lines from `def` to its last line) of every function and method."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_over_the_limit(package):
    too_long = [f"{path.relative_to(ROOT)}: {name} is {length} lines"
                for path in library_modules(package)
                for name, length in function_lengths(path) if length > MAX_FUNCTION_LINES]
    assert not too_long, f"over {MAX_FUNCTION_LINES} lines, split them:\n" + "\n".join(too_long)


def test_no_runtime_module_is_over_the_limit():
    too_long = [f"{path.relative_to(ROOT)} is {lines} lines"
                for path in library_modules("runtime")
                if (lines := len(path.read_text(encoding="utf-8").splitlines()))
                > MAX_RUNTIME_MODULE_LINES]
    assert not too_long, (f"over {MAX_RUNTIME_MODULE_LINES} lines, split them by idea:\n"
                          + "\n".join(too_long))


def test_the_length_check_sees_methods_and_nested_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("class A:\n    def f(self):\n        def g():\n            pass\n"
                      "        return g\n")
    assert function_lengths(source) == [("A.f", 4), ("A.f.g", 2)]
