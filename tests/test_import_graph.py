"""``tools/import_graph.py``: the rooms' import rules, on small packages and on this one."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", REPO / "tools" / "import_graph.py")
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)


def _package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / "jaxopt_notes" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"jaxopt_notes": root / "jaxopt_notes"}


CLEAN = {
    "__init__.py": "from jaxopt_notes.core_mod import f\n",
    "_checks.py": "def positive(x): return x\n",
    "core_mod.py": "from jaxopt_notes import _checks\ndef f(): return _checks.positive(1)\n",
    "tools/__init__.py": "from jaxopt_notes.tools._impl import g\n",
    "tools/_impl.py": "from .. import core_mod\nfrom . import helpers\ndef g(): pass\n",
    "tools/helpers.py": "",
    "app/__init__.py": "def run():\n    from jaxopt_notes.tools import g\n",
}


def test_a_clean_package_has_no_problems_and_draws_its_rooms(tmp_path):
    drawing, problems = graph.check(_package(tmp_path, CLEAN))
    assert problems == []
    assert drawing.startswith("flowchart LR\n")
    for edge in ("jaxopt_notes -->|1| core", "core -->|1| shared", "tools -->|1| core"):
        assert edge in drawing
    assert "app -->|1| tools" in drawing  # an import inside a function counts


@pytest.mark.parametrize(
    "importer, line, what",
    [
        ("app/__init__.py", "from jaxopt_notes.tools import _impl\n", "jaxopt_notes.tools._impl"),
        (
            "app/__init__.py",
            "from jaxopt_notes.tools._impl import g\n",
            "jaxopt_notes.tools._impl.g",
        ),
        ("app/__init__.py", "from ..tools._impl import g\n", "jaxopt_notes.tools._impl.g"),
        (
            "app/__init__.py",
            "from jaxopt_notes.core_mod import _hidden\n",
            "jaxopt_notes.core_mod._hidden",
        ),
        ("app/__init__.py", "import jaxopt_notes.tools._impl\n", "jaxopt_notes.tools._impl"),
    ],
)
def test_a_private_name_of_another_room_is_reported(tmp_path, importer, line, what):
    files = {**CLEAN, importer: CLEAN[importer] + line}
    _, problems = graph.check(_package(tmp_path, files))
    assert len(problems) == 1, problems
    assert f"{importer}:" in problems[0] and f" imports {what}," in problems[0]


def test_a_cycle_between_rooms_is_reported(tmp_path):
    files = {**CLEAN, "tools/helpers.py": "from jaxopt_notes import app\n"}
    _, problems = graph.check(_package(tmp_path, files))
    assert problems == ["import cycle among rooms: app <-> tools"]


def test_the_command_redraws_the_marked_block_and_exits_1_on_a_problem(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{graph.BEGIN}\nold drawing\n{graph.END}\nafter\n")
    monkeypatch.setattr(graph, "check", lambda roots: ("flowchart LR\n", ["x.py:1: broken"]))
    assert graph.main(["--update", str(readme)]) == 1
    block = f"{graph.BEGIN}\n```mermaid\nflowchart LR\n```\n{graph.END}"
    assert readme.read_text() == f"# x\n{block}\nafter\n"
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="must hold the markers"):
        graph.main(["--update", str(readme)])


def test_the_command_covers_the_library_and_both_rooms_of_the_lab(monkeypatch):
    seen = []
    monkeypatch.setattr(graph, "check", lambda roots: (seen.append(roots), ("", []))[1])
    assert graph.main(["--check"]) == 0
    assert seen == [
        {
            "jaxopt_notes": REPO / "jaxopt_notes",
            "jaxopt_notes.experiments": REPO / "experiments",
            "jaxopt_notes.benchmarks": REPO / "benchmarks",
        }
    ]


def test_a_private_import_in_the_benchmarks_fails_the_check(tmp_path, monkeypatch, capsys):
    files = {**CLEAN, "tools/__init__.py": "def g(): pass\n", "tools/_impl.py": ""}
    _package(tmp_path, files)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("from jaxopt_notes.tools import _impl\n")
    monkeypatch.setattr(graph, "REPO", tmp_path)
    assert graph.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "benchmarks/__init__.py:1: jaxopt_notes.benchmarks (benchmarks) imports" in err


def test_this_package_keeps_the_rules(capsys):
    assert graph.main(["--check"]) == 0, capsys.readouterr().err
