"""Habits the code base keeps (issue 20): small functions, no repeated blocks in src/."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "diffdensity"
MAX_LINES = 60


def test_no_function_in_src_is_longer_than_60_lines():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_duplicates_finds_no_repeated_block_in_src():
    """The `duplicates` tool of this workplace (skipped where it is not installed)."""
    exe = shutil.which("duplicates")
    if exe is None:
        pytest.skip("the `duplicates` command is not installed on this machine")
    out = subprocess.run([exe, "--repo", str(SRC)], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().startswith("no duplicates"), out
