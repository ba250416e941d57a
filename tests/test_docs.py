"""The documentation's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
PAGES = sorted(DOCS.glob("*.md"))


def test_the_pages_have_examples():
    assert PAGES and sum(len(BLOCK.findall(p.read_text())) for p in PAGES) >= 5


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_python_block_runs(page):
    for code in BLOCK.findall(page.read_text()):
        exec(compile(code, str(page), "exec"), {"__name__": "docs_example"})


def test_the_analyse_example_says_what_it_claims():
    namespace: dict = {}
    exec(BLOCK.findall((DOCS / "analyse.md").read_text())[0], namespace)
    hessian, loss_fn, params = namespace["hessian"], namespace["loss_fn"], namespace["params"]
    assert hessian.classify(loss_fn, params).kind == "saddle"


def test_the_conventions_table_is_what_its_script_prints():
    import subprocess
    import sys

    printed = subprocess.run(
        [sys.executable, str(DOCS / "conventions_demo.py")], capture_output=True, text=True
    ).stdout.splitlines()
    lines = (DOCS / "conventions.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| `") and line.count("|") == 5]
    assert printed and printed == rows[-len(printed) :]
