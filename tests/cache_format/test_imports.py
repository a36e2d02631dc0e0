"""cache_format imports nothing of the project's other packages and no torch: it is first in
the import order (cache_format <- export <- runtime <- bench), and the shared CLI error
path (cli_errors) lives here so that every CLI can import it without breaking that rule."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "cache_format"
FORBIDDEN = ("export", "runtime", "bench", "torch", "transformers")


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_cache_format_imports_nothing_downstream(path):
    tree = ast.parse(path.read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]
    names += [node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module]
    bad = [n for n in names if n.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports {bad}"
