"""The documentation's Python examples run as written.

Every ```` ```python ```` block of every page under ``docs/`` runs, the blocks of one page in
order and in one namespace, as a reader following the page would run them. A block that needs
something a test cannot have (a trained run on disk, a second process) is fenced ```` ```py ````
instead: highlighted the same, shown, not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
PAGES = sorted(DOCS.rglob("*.md"))
TUTORIALS = ("notes_tested", "compose", "curvature")


def _ids(page: Path) -> str:
    return page.relative_to(DOCS).with_suffix("").as_posix()


def test_the_pages_have_examples():
    assert PAGES and sum(len(BLOCK.findall(p.read_text())) for p in PAGES) >= 5


def test_every_tutorial_has_examples_that_run():
    for name in TUTORIALS:
        assert BLOCK.findall((DOCS / "tutorials" / f"{name}.md").read_text()), name


@pytest.mark.parametrize("page", PAGES, ids=[_ids(p) for p in PAGES])
def test_every_python_block_runs(page):
    namespace: dict = {"__name__": "docs_example"}
    for code in BLOCK.findall(page.read_text()):
        exec(compile(code, str(page), "exec"), namespace)


def test_the_analyse_example_says_what_it_claims():
    block = next(b for b in BLOCK.findall((DOCS / "index.md").read_text()) if "classify" in b)
    namespace: dict = {}
    exec(block, namespace)
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


def test_the_site_builds_its_math_without_a_network():
    """Every formula the pages and docstrings hold converts to MathML (no script, no CDN)."""
    import importlib.util

    pytest.importorskip("latex2mathml", reason="the `docs` extra is not installed")
    spec = importlib.util.spec_from_file_location("mathml", DOCS / "hooks" / "mathml.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)

    class Page:
        class file:
            src_uri = "index.md"

    html = (
        '<p><span class="arithmatex">\\(\\hat m_t = m_t/(1-\\beta_1^t)\\)</span></p>'
        '<div class="arithmatex">\\[\\theta_t = \\theta_{t-1} - \\eta\\, g_t &lt; 1\\]</div>'
    )
    out = hook.on_page_content(html, Page, None, None)
    assert "arithmatex" not in out and "\\(" not in out
    assert out.count("<math") == 2 and 'display="block"' in out
    assert "<mo><</mo>" not in out  # the formula's "<" stays escaped inside the MathML
