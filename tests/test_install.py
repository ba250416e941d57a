"""The slim core: ``import jaxopt_notes`` needs no extra, and a missing extra is named.

A slim install is simulated in a subprocess by an import hook that hides the optional
packages (as if ``pip install jaxopt_notes`` had not brought them); the real check, a fresh
venv, is the README's.
"""

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from jaxopt_notes import _extras

REPO = Path(__file__).resolve().parents[1]
OPTIONAL = ("tensorflow_datasets", "orbax", "matplotlib", "mlxtend", "sklearn", "tqdm", "scipy")
TOML = tomllib.loads((REPO / "pyproject.toml").read_text())
PYPROJECT = TOML["project"]

_HIDE = f"""
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
"""


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_the_core_imports_no_optional_package_and_there_is_no_top_level_experiments(tmp_path):
    done = _python(
        "import sys, json, jaxopt_notes as jn\n"
        "jn.adam(1e-3)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
        "import experiments  # installed as jaxopt_notes.experiments only\n",
        tmp_path,
    )
    assert done.stderr.endswith("ModuleNotFoundError: No module named 'experiments'\n")
    assert not set(json.loads(done.stdout)) & {*OPTIONAL, "torch"}


def test_without_the_extras_the_core_works_and_the_rest_names_its_extra(tmp_path):
    code = _HIDE + (
        "import jaxopt_notes as jn\n"
        "jn.adam(1e-3)\n"
        "from jaxopt_notes import cli, data\n"
        "try:\n"
        "    data.load_digits()\n"
        "except ModuleNotFoundError as error:\n"
        "    print(type(error).__name__, error)\n"
        "print('exit', cli.main(['experiments', 'list']))\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        'MissingExtra scikit-learn is not installed; it comes with the `train` extra: pip install "jaxopt_notes[train]"',  # noqa: E501
        "exit 2",
    ]
    assert re.fullmatch(
        r"jaxopt-notes experiments: error: \w+ is not installed; it comes with the "
        r"`(train|experiments)` extra: "
        r'pip install "jaxopt_notes\[\1\]"\n',
        done.stderr,
    )


def test_the_core_dependencies_are_jax_optax_flax_numpy():
    names = {re.split(r"[<>=!~\[ ]", dep)[0].lower() for dep in PYPROJECT["dependencies"]}
    assert names == {"jax", "optax", "flax", "numpy"}


def _extra_packages(extra: str) -> set[str]:
    """The distributions an extra brings, its references to other extras expanded."""
    out = set()
    for dep in PYPROJECT["optional-dependencies"][extra]:
        if dep.startswith("jaxopt_notes["):
            for inner in dep[len("jaxopt_notes[") : -1].split(","):
                out |= _extra_packages(inner)
        else:
            out.add(re.split(r"[<>=!~\[ ]", dep)[0].lower())
    return out


def _require_calls():
    for root in (REPO / "jaxopt_notes", REPO / "experiments"):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
                    if all(isinstance(a, ast.Constant) for a in node.args):
                        yield path.name, *(a.value for a in node.args)


def test_every_require_names_an_extra_that_installs_the_module():
    assert set(PYPROJECT["optional-dependencies"]) == set(_extras.EXTRAS)
    calls = list(_require_calls())
    assert len(calls) >= 5  # the data loaders, training, plots, experiments
    for where, module, extra in calls:
        top = module.split(".")[0]
        package = _extras._DISTRIBUTIONS.get(top, top)
        assert package in _extra_packages(extra), f"{where}: {module} is not in [{extra}]"


def test_require_names_the_extra_and_rejects_an_unknown_one():
    with pytest.raises(_extras.MissingExtra, match=r"jaxopt_notes\[experiments\]"):
        _extras.require("no_such_module_here.sub", "experiments")
    with pytest.raises(ValueError, match="`extra` must be one of"):
        _extras.require("json", "plots")


def test_every_subpackage_is_installed():
    """The package list is explicit (the lab's two rooms are mapped in): a new room must join it."""
    rooms = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "jaxopt_notes").rglob("__init__.py")
    }
    listed = set(TOML["tool"]["setuptools"]["packages"])
    assert rooms | {"jaxopt_notes.experiments", "jaxopt_notes.benchmarks"} == listed


def test_import_loads_nothing_native_until_a_fused_step_is_asked_for(tmp_path):
    code = (
        "import sys, jaxopt_notes as jn\n"
        "native = sorted(m for m in sys.modules if m.startswith(('jaxopt_notes._native', "
        "'jaxopt_notes.fused', 'jaxopt_notes.benchmarks')))\n"
        "print(native)\n"
        "jn.fused.adam(1e-3)\n"
        "print('jaxopt_notes.fused' in sys.modules)\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
