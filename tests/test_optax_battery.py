"""optax's own alias test battery (``optax/_src/alias_test.py``, as installed) with ours swapped
in: every case whose ``opt_name`` is a name of ``jn.OPTIMIZERS`` runs with ``jn.OPTIMIZERS[name]``
in place of ``optax.<name>``; the other cases are not run here (they test optax alone).

The cheap checks (extra arguments, ``inject_hyperparams``, dtypes kept and explicit, state
stability under ``lax.cond``, ``MultiSteps``) run by default; ``test_optimization`` (10,000
steps on a parabola and Rosenbrock's function, float32 and complex64, per optimizer) is slow.
"""

from __future__ import annotations

import re
import unittest

import pytest

import jaxopt_notes as jn

alias_test = pytest.importorskip(
    "optax._src.alias_test", reason="optax's test file needs absl, scipy and scikit-learn"
)
NAME = re.compile(r"opt_name='([a-z_0-9]+)'")


def _ours(self, opt_name: str):
    return jn.OPTIMIZERS[opt_name]


def _params(case: unittest.TestCase) -> str:
    """The parameters absl's ``parameterized`` gave the case, as it prints them."""
    return getattr(getattr(case, case._testMethodName), "__x_params_repr__", "")


def _cases() -> list[unittest.TestCase]:
    suite = unittest.TestLoader().loadTestsFromTestCase(alias_test.AliasTest)
    found = []
    for case in suite:
        name = NAME.search(_params(case))
        if name and name.group(1) in jn.OPTIMIZERS:
            found.append(case)
    return found


CASES = {case._testMethodName: case for case in _cases()}
SLOW = {k for k in CASES if k.startswith("test_optimization")}


def _run(case_id: str, monkeypatch) -> None:
    monkeypatch.setattr(alias_test, "_get_opt", _ours)
    result = unittest.TestResult()
    CASES[case_id].run(result)
    problems = [f"{t.id()}: {msg[-1500:]}" for t, msg in result.errors + result.failures]
    assert not problems, "\n".join(problems)


def test_the_battery_covers_our_names():
    named = {NAME.search(_params(c)).group(1) for c in CASES.values()}
    assert {"adam", "adafactor", "adan", "rprop", "lion", "radam"} <= named


@pytest.mark.parametrize("case_id", sorted(set(CASES) - SLOW))
def test_optax_alias_case_with_ours(case_id, monkeypatch):
    _run(case_id, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", sorted(SLOW))
def test_optax_optimization_case_with_ours(case_id, monkeypatch):
    _run(case_id, monkeypatch)
