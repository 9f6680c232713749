"""The package's structure: imports point down its layers with no loops (import-linter contracts in
pyproject.toml), the toy world is reached only as a plug-in, and the product speaks of itself, not of
its development history."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "livo"
# The toy world itself, and the two modules that may know it by name (the demo runs it, the CLI lists
# its commands).
ALLOWED_TO_NAME_THE_TOY_WORLD = (PACKAGE / "toyworld", PACKAGE / "demo.py", PACKAGE / "cli.py")


def test_import_contracts_hold():
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout, done.stdout[-2000:]


def _compares_to(tree: ast.AST, text: str) -> list[int]:
    """Lines where ``text`` is compared with ``==``/``!=``/``in`` or used as a ``match`` case."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value == text for o in operands):
                lines.append(node.lineno)
            for operand in operands:
                if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) and any(
                    isinstance(e, ast.Constant) and e.value == text for e in operand.elts
                ):
                    lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant) and node.value.value == text:
            lines.append(node.lineno)
    return lines


def test_no_stage_special_cases_the_toy_world_by_name():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path == allowed or allowed in path.parents for allowed in ALLOWED_TO_NAME_THE_TOY_WORLD):
            continue
        for line in _compares_to(ast.parse(path.read_text(encoding="utf-8")), "toyworld"):
            found.append(f"{path.relative_to(ROOT)}:{line}")
    assert not found, found


def test_product_code_cites_no_development_history():
    pattern = re.compile(r"issue [0-9]+|DESIGN §|the training issue")
    found = []
    for folder in ("python", "services", "scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix in (".so", ".pyc", ".safetensors", ".onnx", ".index"):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)
            ]
    assert not found, found
