"""The experiment runner, the verdict rules and the reports, on a small stand-in experiment.

Each real experiment has its own tests in ``tests/claims/`` (tiny runs, sabotage, verdicts on
fixed numbers); here a fake one keeps the runner's tests fast and independent of them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from jaxopt_notes.experiments import _claims, _config, _report, _stats
from jaxopt_notes.experiments._common import save_figure

from jaxopt_notes import cli, experiments

SRC = _claims.Source("002_3498af5075c2b1b1.txt", "动量(Momentum)", "原文", "the original")


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    steps: int = 100
    lr: float = 0.1
    momentum: float = _config.param(0.9, low=0.0, high=1.0, high_open=True)
    seeds: int = 10
    effect: float = _config.param(1.0, low=-10.0, high=10.0)  # a sabotage makes it negative
    lrs: tuple = (0.1, 0.2)
    boom: bool = False

    @classmethod
    def quick(cls):
        return cls(steps=10, seeds=3)

    @classmethod
    def tiny(cls):
        return cls(steps=5, seeds=3)


def fake_claims(metrics: dict, cfg: FakeConfig) -> list[dict]:
    test = _claims.Test("gain", ">", 0.0, "no effect", cfg.seeds, paired=True)
    est = _stats.paired_difference(metrics["a"], metrics["b"])
    return [
        _claims.claim("the effect is positive", est, test, SRC, id="effect"),
        _claims.check("1 + 1 = 2", 1 + 1 == 2, {"sum": 2}, id="sum"),
    ]


def fake_main(cfg: FakeConfig, out_dir: Path) -> dict:
    rng = np.random.default_rng(0)
    b = rng.normal(size=cfg.seeds)
    metrics = {"a": (b + cfg.effect + 0.1 * rng.normal(size=cfg.seeds)).tolist(), "b": b.tolist()}
    fig, ax = plt.subplots()
    ax.plot(metrics["a"])
    figures = [save_figure(fig, out_dir, "fake")]
    if cfg.boom:
        raise KeyboardInterrupt  # an interrupted run, after it wrote a figure
    return {"metrics": metrics, "claims": fake_claims(metrics, cfg), "figures": figures}


@pytest.fixture
def fake(monkeypatch):
    module = types.ModuleType("jaxopt_notes.experiments.fake")
    module.SUMMARY, module.DATA = "a stand-in", "synthetic numbers"
    module.Config, module.main, module.claims = FakeConfig, fake_main, fake_claims
    module.QUICK_NOTE = "fewer steps"
    monkeypatch.setitem(sys.modules, "jaxopt_notes.experiments.fake", module)
    monkeypatch.setattr(experiments, "NAMES", ["fake"])
    return module


# -- verdicts ---------------------------------------------------------------------------------


def test_decide_follows_the_interval():
    up = _claims.Test("x", ">", 1.0, "stated", 5)
    down = _claims.Test("x", "<", 1.0, "stated", 5)
    band = _claims.Test("x", "within", (0.8, 1.25), "stated", 5)
    est = _stats.Estimate
    assert _claims.decide(est(2.0, 1.5, 2.5, 5, 0.1, "m"), up)[0] == "reproduced"
    assert _claims.decide(est(0.5, 0.2, 0.9, 5, 0.1, "m"), up)[0] == "not_reproduced"
    assert _claims.decide(est(1.1, 0.9, 1.3, 5, 0.1, "m"), up)[0] == "inconclusive"
    assert _claims.decide(est(0.5, 0.2, 0.9, 5, 0.1, "m"), down)[0] == "reproduced"
    assert _claims.decide(est(1.0, 0.9, 1.1, 5, 0.1, "m"), band)[0] == "reproduced"
    assert _claims.decide(est(2.0, 1.9, 2.1, 5, 0.1, "m"), band)[0] == "not_reproduced"
    assert _claims.decide(est(1.2, 1.1, 1.3, 5, 0.1, "m"), band)[0] == "inconclusive"
    verdict, reason = _claims.decide(est(float("nan"), 0, 1, 5, 0, "m"), up)
    assert verdict == "inconclusive" and "degenerate" in reason


def test_a_tie_is_not_a_win():
    test = _claims.Test("gain", ">", 0.0, "no effect", 5, paired=True)
    tied = _stats.paired_difference([0.9, 0.9, 0.9], [0.9, 0.9, 0.9])
    assert _claims.decide(tied, test)[0] == "inconclusive"


def test_combined_claim_needs_every_part():
    t = _claims.Test("x", ">", 0.0, "no effect", 3)
    good, bad = _stats.mean([1.0, 1.1, 0.9]), _stats.mean([-1.0, -1.1, -0.9])
    straddle = _stats.mean([1.0, -1.0, 0.1])
    assert _claims.claim("c", [good, good], [t, t], SRC, id="c")["verdict"] == "reproduced"
    assert _claims.claim("c", [good, bad], [t, t], SRC, id="c")["verdict"] == "not_reproduced"
    entry = _claims.claim("c", [good, straddle], [t, t], SRC, id="c")
    assert entry["verdict"] == "inconclusive" and len(entry["test"]["parts"]) == 2


def test_intervals_against_known_values():
    est = _stats.mean([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.303
    assert est.value == 2.0 and est.high - 2.0 == pytest.approx(4.303 / np.sqrt(3), 1e-3)
    p = _stats.proportion(0, 20)
    assert p.low == 0.0 and p.high == pytest.approx(0.161, abs=1e-3)  # Wilson, z = 1.96
    r = _stats.paired_ratio([2.0, 4.0], [1.0, 2.0])
    assert r.value == pytest.approx(2.0) and r.low == pytest.approx(2.0)
    t = _stats.timing_ratio([2, 2, 2, 2, 9], [1, 1, 1, 1, 1])
    assert t.value == 2.0  # the median ignores one disturbed round
    with pytest.raises(ValueError, match="pair up"):
        _stats.timing_ratio([1, 2], [1])


def test_tests_and_sources_refuse_bad_definitions():
    with pytest.raises(ValueError, match="comparison"):
        _claims.Test("x", ">=", 0.0, "o", 3)
    with pytest.raises(ValueError, match="low, high"):
        _claims.Test("x", "within", (2.0, 1.0), "o", 3)
    with pytest.raises(ValueError, match="quote"):
        _claims.Source("n.txt", "s", "", "")
    with pytest.raises(ValueError, match="evidence"):
        _claims.check("c", True, {}, id="c")


# -- configs ----------------------------------------------------------------------------------


def test_config_rules():
    cfg = FakeConfig()
    _config.validate(cfg)
    for field, value, rule in [
        ("steps", 0, ">= 1"),
        ("lr", -1.0, "> 0"),
        ("lr", float("inf"), "> 0"),
        ("momentum", 1.0, ">= 0 and < 1"),
        ("lrs", (0.1, 0.0), "> 0"),
    ]:
        with pytest.raises(ValueError, match=rf"`{field}` must be {rule}.*got"):
            _config.validate(dataclasses.replace(cfg, **{field: value}))
    _config.validate(dataclasses.replace(cfg, momentum=0.0))  # a sabotage value is allowed
    assert _config.parse(cfg, "lrs", "0.5, 1") == (0.5, 1.0)
    assert _config.parse(cfg, "boom", "true") is True
    with pytest.raises(ValueError, match="`steps` must be an integer, got '1.5'"):
        _config.parse(cfg, "steps", "1.5")
    with pytest.raises(ValueError, match="true or false"):
        _config.parse(cfg, "boom", "maybe")


# -- the runner and its command line ----------------------------------------------------------


def test_run_writes_result_report_and_figures(tmp_path, fake):
    result = experiments.run("fake", tmp_path, quick=True)
    on_disk = json.loads((tmp_path / "fake" / "result.json").read_text())
    assert (
        on_disk["tally"]
        == result["tally"]
        == {
            "reproduced": 1,
            "not_reproduced": 0,
            "inconclusive": 0,
            "claims": 1,
            "beyond": 0,
            "beyond_reproduced": 0,
            "checks": 1,
            "checks_passed": 1,
        }
    )
    assert on_disk["changed_from_default"]["steps"] == {"default": 100, "used": 10}
    assert on_disk["header"]["versions"]["jax"] and on_disk["cpu_time_s"] >= 0
    claim = on_disk["claims"][0]
    assert claim["kind"] == "claim" and claim["source"]["quote"] == "原文"
    assert claim["test"]["comparison"] == ">" and claim["test"]["seeds"] == 3
    report = (tmp_path / "fake" / "REPORT.md").read_text()
    assert "**reproduced**" in report and "原文" in report and "(fake.png)" in report
    assert "| gain |" in report and "fewer steps" in report
    assert "The runs support the statement" in report  # the plain-words sentence
    page = (tmp_path / "fake" / "REPORT.html").read_text()  # one experiment gets HTML too
    assert "data:image/png;base64," in page and "原文" in page


def test_sabotage_flips_the_fake_claim(tmp_path, fake):
    result = experiments.run("fake", tmp_path, quick=True, overrides={"effect": "-1"})
    assert result["claims"][0]["verdict"] == "not_reproduced"


def test_interrupted_run_keeps_the_old_result_whole(tmp_path, fake):
    experiments.run("fake", tmp_path, quick=True)
    before = (tmp_path / "fake" / "result.json").read_text()
    (tmp_path / "fake" / "fake.png").unlink()  # so a new figure would show
    with pytest.raises(KeyboardInterrupt):
        experiments.run("fake", tmp_path, quick=True, overrides={"boom": "true"})
    assert (tmp_path / "fake" / "result.json").read_text() == before
    assert not (tmp_path / "fake" / "fake.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fake"]


def test_cli_refuses_bad_input_with_one_error_line(tmp_path, fake, capsys):
    out = str(tmp_path)
    for args, words in [
        (["fake", "--set", "nope=1"], "'nope' is not a field"),
        (["fake", "--set", "steps=abc"], "`steps` must be an integer, got 'abc'"),
        (["fake", "--set", "steps=0"], "`steps` must be >= 1, got 0"),
        (["fake", "--set", "lr=-2"], "`lr` must be > 0, got -2.0"),
        (["fake", "--set", "steps"], "FIELD=VALUE"),
        (["--all", "--set", "nope=1"], "no experiment has a field 'nope'"),
        (["nothing"], "must be one of"),
        ([], "give one NAME or --all"),
    ]:
        code = cli.main(["experiments", "run", *args, "--out", out])
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            code == 2 and len(err) == 1 and err[0].startswith("jaxopt-notes experiments: error: ")
        ), (args, err)
        assert words in err[0], (args, err)
    assert not list(tmp_path.iterdir()), "a refused run wrote something"
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["experiments", "run", "fake", "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.startswith("jaxopt-notes experiments: error: `--out`")


def test_cli_help_lists_fields_and_run_ends_with_a_tally(tmp_path, fake, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["experiments", "run", "fake", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "steps=100  (>= 1)" in text and "momentum=0.9  (>= 0 and < 1)" in text
    assert "boom=False  (true or false)" in text
    assert "--quick changes: steps=10, seeds=3" in text
    args = ["experiments", "run", "--all", "--quick", "--out", str(tmp_path), "--set", "steps=7"]
    assert cli.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "claims of the notes: 1 reproduced, 0 not reproduced, 0 inconclusive (of 1)" in lines[-3]
    assert "checks: 1 of 1 passed" in lines[-3]
    assert lines[-2].startswith("Coverage of the notes: ")  # the map's coverage, printed
    assert json.loads((tmp_path / "fake" / "result.json").read_text())["config"]["steps"] == 7
    html = (tmp_path / "REPORT.html").read_text()
    assert "data:image/png;base64," in html and "原文" in html and "reproduced" in html
    md = (tmp_path / "REPORT.md").read_text()
    assert md.startswith("# The notes, tested\n\nclaims of the notes: 1 reproduced")
    assert "(fake/fake.png)" in md


def test_report_counts_claims_not_checks():
    results = [
        {
            "name": "x",
            "claims": [
                {"kind": "check", "verdict": "reproduced"},
                {"kind": "claim", "verdict": "inconclusive"},
                {"kind": "claim", "verdict": "not_reproduced"},
            ],
        }
    ]
    line = _report.tally_line(results[0]["claims"])
    assert line.startswith(
        "claims of the notes: 0 reproduced, 1 not reproduced, 1 inconclusive (of 2)"
    )
    assert line.endswith("beyond the notes: 0 of 0 reproduced; checks: 1 of 1 passed")


def test_beyond_is_counted_apart_from_the_notes():
    claims = [
        {"kind": "beyond", "verdict": "reproduced"},
        {"kind": "claim", "verdict": "reproduced"},
    ]
    assert "(of 1); beyond the notes: 1 of 1 reproduced" in _report.tally_line(claims)


def test_plain_words_say_which_way_and_what_it_means():
    test = {"quantity": "gain", "comparison": ">", "threshold": 0.01}
    entry = {
        "test": {"parts": [test]},
        "measured": [{"value": 0.005, "ci_low": -0.002, "ci_high": 0.012, "n": 5}],
        "settings": {"at the source's rates": "not_reproduced"},
    }
    text = _report.plain_words(entry | {"verdict": "inconclusive"})
    assert text.startswith("The runs cannot tell") and "gain came out 0.005" in text
    assert "needs it above 0.01" in text and "At the source's rates, it is not reproduced" in text
    assert _report.plain_words(entry | {"verdict": "reproduced"}).startswith("The runs support")


def test_tex_in_quotes_reads_as_plain_text():
    tex = r"$\boldsymbol{h} \leftarrow \rho \boldsymbol{h} + \frac{\partial L}{\partial W}$"
    assert _report.plain_math(tex) == "h ← ρ h + (∂ L)/(∂ W)"
    assert _report.plain_math(r"\sqrt{\varepsilon}") == "√(ε)"
    assert _report.plain_math("无公式") == "无公式"


def test_every_experiment_has_a_valid_config_and_pure_claims():
    for name in experiments.NAMES:
        module = experiments.load(name)
        assert callable(module.claims), f"{name} needs a pure claims(metrics, cfg)"
        for mode in (False, True, "tiny"):
            experiments.make_config(module, mode)  # raises if a field breaks its rule


def _entry(id_, kind, verdict):
    test = {"quantity": "q", "comparison": ">", "threshold": 0.0, "statement": "q > 0"}
    return {
        "id": id_,
        "kind": kind,
        "verdict": verdict,
        "claim": f"statement {id_}",
        "reason": "because",
        "test": {"parts": [test]},
        "measured": [{"value": 1.0, "ci_low": 0.5, "ci_high": 1.5, "n": 3}],
        "evidence": {"q": 1.0},
        "source": {"note": "n.txt", "section": "s", "quote": f"原文{id_}", "english": "e"},
    }


def test_the_book_reads_note_by_note_with_each_sentence_and_its_claims(tmp_path):
    from jaxopt_notes.experiments import _notes

    results = [
        {
            "name": "x",
            "figures": [],
            "claims": [
                _entry("a", "claim", "reproduced"),
                _entry("b", "claim", "not_reproduced"),
                _entry("c", "check", "reproduced"),
                _entry("d", "beyond", "inconclusive") | {"source": {
                    "note": "n.txt", "section": "s", "quote": "q", "english": "e",
                    "reference": "Cohen et al. 2021"}},
            ],
        }
    ]  # fmt: skip
    note = _notes.Note(
        "n.txt",
        "笔记",
        "A note",
        (
            _notes.Sentence("s", "第一句 $\\beta$", "first", ("x/b",)),
            _notes.Sentence("s", "第二句", "second", ("x/a", "x/c")),
            _notes.Sentence("s", "第三句", "third", (), "untested: needs a run"),
        ),
    )
    blocks = _report._book_blocks(results, [note])
    text = _report._md(blocks)
    # the note's order, not the experiment's: sentence 1 (claim b) before sentence 2 (claim a)
    assert text.index("第一句 β") < text.index("statement b") < text.index("第二句")
    assert text.index("第二句") < text.index("statement a") < text.index("第三句")
    assert "untested: needs a run" in text
    assert text.index("## Beyond the notes") < text.index("statement d")
    assert "Reference: Cohen et al. 2021" in text
    assert "## Checks of the library's math" in text
    cov = _notes.coverage([note], results)["total"]
    line = _report.coverage_line(cov)
    assert "3 sentences mapped, 3 testable here; 2 tested by claims (1 reproduced, 1 not " in line
    assert "1 not tested yet" in line


def test_a_failing_experiment_does_not_stop_the_others(tmp_path, fake, monkeypatch, capsys):
    broken = types.ModuleType("jaxopt_notes.experiments.broken")
    broken.SUMMARY, broken.DATA, broken.Config = "fails", "none", FakeConfig
    broken.claims = fake_claims

    def fail(cfg, out_dir):
        raise FloatingPointError("diverged")

    broken.main = fail
    monkeypatch.setitem(sys.modules, "jaxopt_notes.experiments.broken", broken)
    monkeypatch.setattr(experiments, "NAMES", ["broken", "fake"])
    code = cli.main(["experiments", "run", "--all", "--quick", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "1 experiment(s) failed" in err and "broken: FloatingPointError" in err
    assert (tmp_path / "fake" / "result.json").exists()  # the one after it still ran
    assert "fake" in (tmp_path / "REPORT.md").read_text()
