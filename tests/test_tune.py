"""Search spaces, the trial program (one compile per stage, injected hyperparameters, the same
steps as ``train``), the search, the range test, the sanity checks and the ``tune`` CLI."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxopt_notes import cli
from jaxopt_notes.train import TrainConfig, make_optimizer, read_toml, train, with_validation
from jaxopt_notes.tune import Range, _trials, check_space, parse_range, sample, search, searchable
from jaxopt_notes.tune.range_test import _analyse, range_test
from jaxopt_notes.tune.sanity import sanity_checks
from jaxopt_notes.tune.search import run_stage

TINY = TrainConfig(
    **dict(model="mlp", dataset="digits", width=16, depth=1, epochs=1, batch_size=64),
    # warps and test-time shifts made for 28x28 digits are large on 8x8
    **dict(rotate=0.0, scale=0.0, elastic=0.0, tta_shift=0),
)


@pytest.fixture(scope="module")
def digits():
    return with_validation(TINY, None)


# ----- spaces


def test_parse_range_and_scales():
    assert parse_range("weight-decay=1e-6:1e-2") == Range("weight_decay", 1e-6, 1e-2, "log")
    assert parse_range("b1=0.5:0.99:log1m").scale == "log1m"
    assert parse_range("dropout=0:0.5:linear").low == 0.0


@pytest.mark.parametrize(
    "text, words",
    [
        ("learning_rate=1e-1:1e-4", "low <= high"),
        ("learning_rate=0:1e-1", "low must be > 0"),
        ("learning_rate=-1e-3:1e-1", "low must be > 0"),
        ("b1=0.5:1.0:log1m", "high must be < 1"),
        ("learning_rate=1e-4", "NAME=LOW:HIGH"),
        ("learning_rate=a:b", "numeric"),
        ("learning_rate=1e-4:1e-1:cubic", "scale"),
    ],
)
def test_bad_ranges_are_refused_by_name(text, words):
    with pytest.raises(ValueError, match=words):
        parse_range(text)


def test_sampling_is_uniform_on_the_log_scale():
    r = parse_range("learning_rate=1e-5:1e-1")
    x = sample([r], 4000, seed=1)["learning_rate"]
    assert x.min() >= 1e-5 and x.max() <= 1e-1
    # a quarter of the decades below 1e-4: a log-uniform draw, not a uniform one (which has ~0.1%)
    assert np.mean(x < 1e-4) == pytest.approx(0.25, abs=0.03)
    b = sample([parse_range("b1=0.9:0.999:log1m")], 4000, seed=1)["b1"]
    assert np.mean(b > 0.99) == pytest.approx(0.5, abs=0.03)


def test_narrowed_range_covers_the_best_and_stays_inside():
    r = parse_range("learning_rate=1e-5:1e-1")
    fine = r.narrowed(np.array([1e-3, 3e-3]))
    assert r.low <= fine.low < 1e-3 and 3e-3 < fine.high <= r.high
    assert fine.high / fine.low < 1e2  # narrower than the four decades


def test_space_names_must_be_the_configs():
    allowed = searchable(TINY)
    assert {"learning_rate", "weight_decay", "b1", "b2"} <= set(allowed)
    assert "momentum" not in allowed  # adam has no momentum argument
    assert "momentum" in searchable(dataclasses.replace(TINY, optimizer="sgd"))
    with pytest.raises(ValueError, match="`lr` is not a hyperparameter"):
        check_space([Range("lr", 1e-3, 1e-1)], allowed)
    with pytest.raises(ValueError, match="at least one"):
        check_space([], allowed)
    with pytest.raises(ValueError, match="`dropout` is a field of the run config, but"):
        check_space([Range("dropout", 0.0, 0.5, "linear")], allowed, _trials.fixed(TINY))
    with pytest.raises(ValueError, match="once"):
        check_space([Range("b1", 0.5, 0.9, "linear")] * 2, allowed)


# ----- the trial program


def test_one_compile_for_both_stages_and_values_in_the_state(digits):
    program = _trials.build(TINY, digits, ("learning_rate", "b1"))
    for seed in (0, 1):
        values = sample(
            [parse_range("learning_rate=1e-3:1e-2"), parse_range("b1=0.8:0.95:linear")],
            3,
            seed=seed,
        )
        params = jax.tree.map(lambda a: a[0], _trials.initial_params(TINY, digits, [0]))
        states = program.init(_trials.broadcast(params, 3), _trials.stack(values))
        injected = np.asarray(states.opt_state.hyperparams["b1"])
        np.testing.assert_allclose(injected, values["b1"], rtol=1e-6)
        x, y = jax.device_put((digits.x_train, digits.y_train))
        program.epoch(states, _trials.stack(values), np.ones(3, bool), x, y, jax.random.key(0))
    assert program.epoch._cache_size() == 1  # the second stage's values did not recompile


def test_a_trial_takes_the_steps_train_takes(digits):
    # the search scores exactly the run `jaxopt-notes train --config` would make
    # two rates far from each other and from the default, so the trials must differ
    values = {"learning_rate": np.array([3e-2, 1e-4])}
    program = _trials.build(TINY, digits, ("learning_rate",))
    trials = run_stage(program, TINY, digits, values)
    alone = train(dataclasses.replace(TINY, learning_rate=3e-2), digits, progress=False)
    assert trials[0]["val_accuracy"] == pytest.approx(
        alone["history"][-1]["val_accuracy"], abs=1e-6
    )
    assert trials[0]["val_accuracy"] != trials[1]["val_accuracy"]


def test_a_search_on_mse_trains_and_scores_mse_as_train_does(digits):
    # the trials once always trained softmax cross-entropy, whatever the run's `loss`
    mse = dataclasses.replace(TINY, loss="mse", label_smoothing=0.0)
    values = {"learning_rate": np.array([3e-2])}
    trial = run_stage(_trials.build(mse, digits, ("learning_rate",)), mse, digits, values)[0]
    alone = train(dataclasses.replace(mse, learning_rate=3e-2), digits, progress=False)
    assert trial["val_loss"] == pytest.approx(alone["history"][-1]["val_loss"], rel=1e-5)
    assert trial["val_accuracy"] == pytest.approx(alone["history"][-1]["val_accuracy"], abs=1e-6)
    ce = dataclasses.replace(mse, loss="cross_entropy")
    other = run_stage(_trials.build(ce, digits, ("learning_rate",)), ce, digits, values)[0]
    assert other["val_loss"] != pytest.approx(trial["val_loss"], rel=1e-2)


@pytest.mark.parametrize(
    "changes, searched",
    [
        ({}, {"learning_rate": 1e-2, "b1": 0.8}),
        ({"weight_decay": 1e-2, "clip_norm": 0.5, "warmup_epochs": 1.0}, {"weight_decay": 0.3}),
        (
            {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay_mode": "coupled"},
            {"weight_decay": 0.05, "momentum": 0.5},
        ),
        ({"optimizer": "adamw", "skip_nonfinite": True}, {"weight_decay": 0.1}),
        ({"optimizer": "rmsprop", "convention": "pytorch"}, {"decay": 0.95}),
    ],
)
def test_a_trials_optimizer_is_trains_for_the_same_config(changes, searched):
    """The trial's chain is ``train.make_optimizer``'s (clipping, decay links, schedule,
    skip_nonfinite), its values injected and read under ``jit`` as the program reads them."""
    cfg = dataclasses.replace(TINY, schedule="cosine", epochs=3, **changes)
    run = dataclasses.replace(cfg, **searched)
    ours = _trials.make_optimizer(cfg, 4, _trials.defaults(cfg, tuple(searched)))
    ours = ours._replace(update=jax.jit(ours.update))
    theirs = make_optimizer(run, 4)
    theirs = theirs._replace(update=jax.jit(theirs.update))
    params = {"w": jax.numpy.linspace(-1.0, 1.0, 6), "b": jax.numpy.ones(2)}
    state_o, state_t = ours.init(params), theirs.init(params)
    state_o = _trials.with_values(
        _trials.TrainState(params, None, state_o), _trials.stack(searched)
    ).opt_state
    for step in range(9):  # past the warm-up, into the cosine
        grads = jax.tree.map(lambda p: jax.numpy.sin(p * (step + 1)) + 0.1 * p, params)
        u_o, state_o = ours.update(grads, state_o, params)
        u_t, state_t = theirs.update(grads, state_t, params)
        for a, b in zip(jax.tree.leaves(u_o), jax.tree.leaves(u_t), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-9)
        params = jax.tree.map(lambda p, u: p + u, params, u_t)


def test_defaults_are_the_optimizers_own_under_the_runs_convention():
    # a mirrored table once said rmsprop's decay is 0.9; torch's (convention pytorch) is 0.99
    torch_like = dataclasses.replace(TINY, optimizer="rmsprop", convention="pytorch")
    assert _trials.defaults(torch_like, ("decay", "eps", "momentum")) == {
        "decay": 0.99,
        "eps": 1e-8,
        "momentum": 0.0,
    }
    assert _trials.defaults(dataclasses.replace(TINY, b2=0.95), ("b2", "learning_rate")) == {
        "b2": 0.95,
        "learning_rate": TINY.learning_rate,
    }


def test_vmapped_and_looped_trials_agree(digits):
    values = {"learning_rate": np.array([1e-3, 3e-2])}
    looped = run_stage(
        _trials.build(TINY, digits, ("learning_rate",), chunk=1), TINY, digits, values
    )
    wide = run_stage(
        _trials.build(TINY, digits, ("learning_rate",), chunk=None), TINY, digits, values
    )
    for a, b in zip(looped, wide, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_successive_halving_stops_the_worse_half_each_epoch(digits):
    cfg = dataclasses.replace(TINY, epochs=3)
    values = {"learning_rate": np.geomspace(1e-5, 1e-1, 8)}
    trials = run_stage(
        _trials.build(cfg, digits, ("learning_rate",)), cfg, digits, values, halving=True
    )
    assert sorted(t["epochs"] for t in trials) == [1, 1, 1, 1, 2, 2, 3, 3]
    assert all(np.isnan(t["val_accuracy"]) == (t["epochs"] < 3) for t in trials)


def test_search_writes_a_config_train_takes(digits, tmp_path):
    result = search(
        TINY, [parse_range("learning_rate=1e-4:1e-1")], trials=4, fine_trials=4, data=digits
    )
    assert len(result.trials) == 8 and [t["stage"] for t in result.trials].count("fine") == 4
    fine = result.fine_space[0]
    assert 1e-4 <= fine.low <= fine.high <= 1e-1
    best = max(result.trials, key=lambda t: (t["val_accuracy"], -t["val_loss"]))  # ties: loss
    assert result.best == best["values"]
    result.save(tmp_path)
    cfg = read_toml(tmp_path / "config.toml")
    assert cfg.learning_rate == pytest.approx(result.best["learning_rate"])
    assert cfg.width == TINY.width and cfg.epochs == TINY.epochs
    assert (tmp_path / "search.png").stat().st_size > 0
    assert "| stage | learning_rate |" in (tmp_path / "table.md").read_text()


# ----- range test, sanity


def test_range_analysis_on_a_u_shaped_curve():
    lrs = np.geomspace(1e-5, 10, 300)
    u = np.log10(lrs)
    loss = 2.3 - 1.8 / (1 + np.exp(-3 * (u + 3))) + np.where(u > -1, 10 * (u + 1) ** 2, 0)
    result = _analyse(lrs, loss, 0.9)
    low, high = result.suggested
    assert 3e-4 < result.steepest_lr < 3e-3  # the logistic's steepest point is at 1e-3
    assert 1e-2 < result.min_loss_lr <= 0.12
    assert result.diverged_at is not None and result.diverged_at > result.min_loss_lr
    assert low < high


def test_range_test_on_digits_finds_a_falling_region(digits):
    result = range_test(TINY, steps=60, min_lr=1e-5, max_lr=1.0, data=digits)
    assert result.smoothed.min() < 0.8 * result.smoothed[0]
    assert 1e-5 <= result.suggested[0] <= result.suggested[1] <= 1.0


def test_sanity_checks_on_a_working_and_a_crippled_model(digits):
    small = dataclasses.replace(TINY, width=64, init="normal", init_std=0.01)
    ok = sanity_checks(small, data=digits, subset=20, steps=200)
    # tiny weights: uniform outputs, so the loss is ln C
    assert ok.initial_loss == pytest.approx(ok.ln_c, rel=0.01) and ok.initial_loss_ok
    assert ok.overfits and ok.subset_accuracy >= 0.99
    assert [r["layer"] for r in ok.layers] == ["hidden.0.kernel", "out.kernel"]
    big = dataclasses.replace(TINY, width=1, init="normal", init_std=3.0)
    crippled = sanity_checks(big, data=digits, subset=20, steps=200)
    assert crippled.initial_loss > 1.5 * crippled.ln_c and not crippled.initial_loss_ok
    assert "high" in crippled.report()
    assert not crippled.overfits and "does NOT fit" in crippled.report()


# ----- CLI


@pytest.mark.parametrize(
    "argv, words",
    [
        (["tune", "search", "--search", "lr=1e-4:1e-1"], "`lr` is not a hyperparameter"),
        (["tune", "search", "--search", "learning_rate=1e-1:1e-4"], "low <= high"),
        (["tune", "search", "--search", "learning_rate=0:1e-1"], "low must be > 0"),
        (["tune", "search"], "at least one"),
        (["tune", "search", "--search", "learning_rate=1e-4:1e-1", "--trials", "0"], "`trials`"),
        (["tune", "search", "--set", "widht=3", "--search", "learning_rate=1e-4:1e-1"], "widht"),
        (["tune", "nonsense"], "invalid choice"),
        (["tune", "search", "--config", "/nonexistent.toml"], "/nonexistent.toml"),
        (["doctor"], "--run"),
    ],
)
def test_cli_bad_input_is_one_error_line(argv, words, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and "error:" in lines[0] and words in lines[0]


# ----- ensembles


def test_ema_with_decay_zero_is_the_last_weights_and_ensembles_average(digits):
    from jaxopt_notes.tune import ensemble

    same = ensemble.weight_average(TINY, digits, "ema", decay=0.0)
    assert same["ensemble"] == same["members"][0]  # an average over one step: the weights
    both = ensemble.independent(TINY, digits, k=2)
    assert len(both["members"]) == 2 and both["members"][0] != both["members"][1]
    assert 0.0 <= both["ensemble"] <= 1.0


def test_a_range_reaching_a_value_train_refuses_is_refused_before_any_trial():
    from jaxopt_notes.tune.search import check_ends
    from jaxopt_notes.tune.space import parse_range

    check_ends([parse_range("b1=0.5:0.99:linear")], TINY)  # inside b1's [0, 1)
    with pytest.raises(ValueError, match=r"the range of 'b1' reaches 1.5, a value a run refuses"):
        check_ends([parse_range("b1=0.5:1.5:linear")], TINY)
    with pytest.raises(ValueError, match="learning_rate"):
        check_ends([parse_range("learning_rate=-1:1:linear")], TINY)
