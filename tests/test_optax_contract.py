"""What optax promises of its aliases, checked for every alias of ours with an optax
counterpart: dtypes kept, explicit state dtypes, ``optax.inject_hyperparams`` with ``init``
and ``update`` jitted, extra arguments, ``optax.MultiSteps``, and convergence on a parabola and
on Rosenbrock's function in float32 and complex64.

Each check jits once per optimizer (all dtypes in one tree, both problems in one program), so
the file stays fast.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn

# name: (ours, optax's), each a function of the learning rate
ALIASES = {
    "sgd": (jn.sgd, optax.sgd),
    "momentum": (lambda lr, **kw: jn.sgd(lr, 0.9, **kw), lambda lr, **kw: optax.sgd(lr, 0.9, **kw)),
    "nesterov": (
        lambda lr, **kw: jn.sgd(lr, 0.9, nesterov=True, **kw),
        lambda lr, **kw: optax.sgd(lr, 0.9, nesterov=True, **kw),
    ),
    "adagrad": (jn.adagrad, optax.adagrad),
    "rmsprop": (jn.rmsprop, optax.rmsprop),
    "adam": (jn.adam, optax.adam),
    "adamw": (jn.adamw, optax.adamw),
    "amsgrad": (jn.amsgrad, optax.amsgrad),
    "nadam": (jn.nadam, optax.nadam),
    "adamax": (jn.adamax, optax.adamax),
    "lion": (jn.lion, optax.lion),
    "adabelief": (jn.adabelief, optax.adabelief),
    "yogi": (jn.yogi, optax.yogi),
    "radam": (jn.radam, optax.radam),
    "nadamw": (jn.nadamw, optax.nadamw),
    "adadelta": (jn.adadelta, optax.adadelta),
    "lamb": (jn.lamb, optax.lamb),
    "lars": (jn.lars, optax.lars),
    "muon": (jn.muon, optax.contrib.muon),
    "adopt": (jn.adopt, optax.contrib.adopt),
    "ademamix": (jn.ademamix, optax.contrib.ademamix),
    "adan": (jn.adan, optax.adan),
    "rprop": (jn.rprop, optax.rprop),
    "adafactor": (jn.adafactor, optax.adafactor),
    "schedule_free_sgd": (jn.schedule_free_sgd, optax.contrib.schedule_free_sgd),
    "schedule_free_adamw": (jn.schedule_free_adamw, optax.contrib.schedule_free_adamw),
    "prodigy": (jn.prodigy, optax.contrib.prodigy),
    "dadapt_adamw": (jn.dadapt_adamw, optax.contrib.dadapt_adamw),
    "dog": (jn.dog, optax.contrib.dog),
    "dowg": (jn.dowg, optax.contrib.dowg),
}
NAMES = sorted(ALIASES)
DTYPES = (jnp.bfloat16, jnp.float32, jnp.complex64)


def _params():
    return {str(jnp.dtype(d)): jnp.linspace(0.5, 1.5, 6, dtype=d).reshape(2, 3) for d in DTYPES}


def _grads(params, k):
    return jax.tree.map(lambda p: jnp.cos(3 * p + k).astype(p.dtype), params)


# ours with no optax counterpart, checked against their own references elsewhere
NO_OPTAX = {"shampoo": "tests/test_shampoo.py", "soap": "tests/test_soap.py"}


def test_every_alias_of_ours_is_covered():
    assert set(ALIASES) | set(NO_OPTAX) == set(jn.OPTIMIZERS)
    assert not set(ALIASES) & set(NO_OPTAX)


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_are_kept(name):
    """Updates, parameters and the state's moments keep each leaf's dtype (bfloat16, float32,
    complex64), through three jitted steps."""
    tx, params = ALIASES[name][0](1e-2), _params()
    state, step = tx.init(params), jax.jit(tx.update)
    for k in range(3):
        u, state = step(_grads(params, k), state, params)
        for key, p in params.items():
            assert u[key].dtype == p.dtype, (name, key)
            assert bool(jnp.all(jnp.isfinite(u[key]))), (name, key)
        params = jn.apply_updates(params, u)
    assert all(str(p.dtype) == key for key, p in params.items())
    # the moments' dtypes are optax's, except that a second moment of a complex leaf (|g|^2)
    # is kept real here where optax keeps it complex with a zero imaginary part
    ours = _moment_dtypes(state, params)
    theirs = _moment_dtypes(ALIASES[name][1](1e-2).init(params), params)
    real = lambda ds: sorted(d.replace("complex64", "float32") for d in ds)  # noqa: E731
    assert real(ours) == real(theirs), name
    assert ours.count("complex64") <= theirs.count("complex64"), name


def _moment_dtypes(state, params) -> list[str]:
    """The dtypes of the state's leaves shaped like a parameter (the moments), sorted."""
    shapes = {p.shape for p in jax.tree.leaves(params)}
    return sorted(str(x.dtype) for x in jax.tree.leaves(state) if x.shape in shapes)


def _takes(fn, keyword: str) -> bool:
    return keyword in inspect.signature(fn).parameters


# name: the keyword, where both ours and optax's alias take it (sgd's buffer needs momentum)
STATE_DTYPED = {
    "momentum": "accumulator_dtype",
    "nesterov": "accumulator_dtype",
    **{n: "mu_dtype" for n in NAMES if all(_takes(f, "mu_dtype") for f in ALIASES[n])},
}


@pytest.mark.parametrize("name", sorted(STATE_DTYPED))
def test_explicit_state_dtypes_are_optaxs(name):
    """``mu_dtype`` (``accumulator_dtype`` for sgd's momentum) stores the first moment in that
    type, as optax's alias does, and the updates stay in the parameters' type."""
    key = STATE_DTYPED[name]
    params = {"w": jnp.ones((2, 3), jnp.float32)}
    ours, theirs = (f(1e-2, **{key: jnp.bfloat16}) for f in ALIASES[name])
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert _moment_dtypes(s_ours, params) == _moment_dtypes(s_theirs, params)
    assert "bfloat16" in _moment_dtypes(s_ours, params)
    u, s_ours = jax.jit(ours.update)(_grads(params, 0), s_ours, params)
    assert u["w"].dtype == jnp.float32
    assert _moment_dtypes(s_ours, params) == _moment_dtypes(s_theirs, params)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14), a, b)


INJECTABLE = {  # the plain factories of the names above (inject_hyperparams binds by name)
    **{n: jn.OPTIMIZERS[n] for n in NAMES if n not in ("momentum", "nesterov")},
    "momentum": jn.sgd,
}


@pytest.mark.parametrize("name", sorted(INJECTABLE))
def test_inject_hyperparams_jitted_equals_the_plain_optimizer(name, x64):
    """float64: in float32 ``1 - b**t`` takes the last bit of ``b**t``, which XLA's compiled
    power need not share with the eager one (see tests/test_modern.py)."""
    factory = INJECTABLE[name]
    extra = {"momentum": 0.9} if name == "momentum" else {}
    plain = factory(1e-2, **extra)
    static = jn.optimizers.STATIC_ARGS.get(name, ())
    wrapped = optax.inject_hyperparams(factory, static_args=static)(learning_rate=1e-2, **extra)
    params = {"w": jnp.linspace(0.5, 1.5, 6).reshape(2, 3)}
    p_state, w_state = plain.init(params), jax.jit(wrapped.init)(params)
    assert jax.tree.structure(w_state.inner_state) == jax.tree.structure(p_state)
    p_step, w_step = jax.jit(plain.update), jax.jit(wrapped.update)
    for k in range(6):
        g = _grads(params, k)
        pu, p_state = p_step(g, p_state, params)
        wu, w_state = w_step(g, w_state, params)
        _close(wu, pu)
        _close(w_state.inner_state, p_state)
        params = jn.apply_updates(params, pu)
    assert jn.current_learning_rate(w_state) == pytest.approx(1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_extra_args_reach_the_chain_and_change_nothing(name):
    tx = ALIASES[name][0](1e-2)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = {"w": jnp.linspace(0.5, 1.5, 6).reshape(2, 3)}
    state, g = tx.init(params), _grads(params, 0)
    u1, s1 = tx.update(g, state, params)
    u2, s2 = tx.update(g, state, params, loss=jnp.asarray(1.0), key=jax.random.key(0))
    _close(u1, u2)

    # and inside optax's own chain, beside a link that reads an extra argument
    def scale_by_loss():
        return optax.GradientTransformationExtraArgs(
            optax.init_empty_state,
            lambda u, s, p=None, *, loss, **kw: (jax.tree.map(lambda x: x * loss, u), s),
        )

    both = optax.chain(tx, scale_by_loss())
    u3, _ = both.update(g, both.init(params), params, loss=jnp.asarray(2.0))
    _close(u3, jax.tree.map(lambda x: 2 * x, u1))


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_accumulates_like_optax(name, x64):
    """optax.MultiSteps over ours equals it over optax's alias (1e-9), and ours on the mean of
    each group of k gradients (1e-7: MultiSteps accumulates in float32 even under x64)."""
    k = 3
    multis = [optax.MultiSteps(make(1e-2), every_k_schedule=k) for make in ALIASES[name]]
    tx = ALIASES[name][0](1e-2)
    params = {"w": jnp.linspace(0.5, 1.5, 6).reshape(2, 3)}
    m_params = [params, params]
    m_states = [m.init(params) for m in multis]
    m_steps = [jax.jit(m.update) for m in multis]
    state, step = tx.init(params), jax.jit(tx.update)
    for group in range(2):
        grads = [_grads(params, 3 * group + i) for i in range(k)]
        for g in grads:
            for j in range(2):
                u, m_states[j] = m_steps[j](g, m_states[j], m_params[j])
                m_params[j] = jn.apply_updates(m_params[j], u)
        mean = jax.tree.map(lambda *xs: sum(xs) / k, *grads)
        u, state = step(mean, state, params)
        params = jn.apply_updates(params, u)
        np.testing.assert_allclose(m_params[0]["w"], m_params[1]["w"], rtol=1e-9)
        np.testing.assert_allclose(m_params[0]["w"], params["w"], rtol=1e-7)
    assert int(m_states[0].gradient_step) == 2


# ------------------------------------------------------------------------- convergence
LEARNING_RATES = {  # name: (on the parabola, 300 steps; on Rosenbrock, 5,000 steps)
    "sgd": (0.01, 1e-3),
    "momentum": (0.01, 1e-3),
    "nesterov": (0.01, 1e-3),
    "adagrad": (0.3, 0.3),
    "rmsprop": (0.03, 0.01),
    "adam": (0.03, 0.03),
    "adamw": (0.03, 0.03),
    "amsgrad": (0.1, 0.1),
    "nadam": (0.03, 0.03),
    "adamax": (0.1, 0.1),
    "lion": (0.03, 0.03),
    "adabelief": (0.03, 0.03),
    "yogi": (0.03, 0.03),
    "radam": (0.03, 3e-3),
    "nadamw": (0.03, 0.03),
    "adadelta": (3.0, 1.0),
    "lamb": (0.03, 0.03),
    "lars": (3.0, 3.0),
    "muon": (0.03, 0.03),  # the parabola's and Rosenbrock's x is a vector: Adam's steps
    "adopt": (0.03, 0.03),
    "ademamix": (0.03, 0.01),
    "adan": (0.03, 0.03),
    "rprop": (0.01, 0.01),
    "adafactor": (0.1, 0.03),  # relative steps: times the RMS of x
    "schedule_free_sgd": (0.01, 1e-3),
    "schedule_free_adamw": (0.03, 0.03),
    # the learning-rate-free methods: the rate multiplies their own estimate
    "prodigy": (1.0, 1.0),
    "dadapt_adamw": (1.0, 0.3),
    "dog": (1.0, 1.0),
    "dowg": (1.0, 1.0),
}


def parabola(x):
    centre = jnp.asarray([1.0, -2.0], x.dtype) + (0.5j if jnp.iscomplexobj(x) else 0.0)
    return jnp.sum(jnp.asarray([1.0, 10.0]) * jnp.abs(x - centre) ** 2)


def rosenbrock(x):
    """Rosenbrock's valley; for complex x, |.|^2 in place of squares (minimum 0 at (1, 1))."""
    return jnp.abs(1 - x[0]) ** 2 + 100 * jnp.abs(x[1] - x[0] ** 2) ** 2


def _descend(tx, f, x0, steps):
    """``steps`` updates from ``x0``; the loss ratio final / initial. For complex x the
    descent direction is the conjugate of ``jax.grad`` (JAX's convention for real losses)."""

    def body(_, carry):
        x, s = carry
        u, s = tx.update(jnp.conj(jax.grad(f)(x)), s, x)
        return jn.apply_updates(x, u), s

    x, _ = jax.lax.fori_loop(0, steps, body, (x0, tx.init(x0)))
    return f(x) / f(x0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_parabola_and_on_rosenbrock(name, dtype):
    lr_parabola, lr_rosenbrock = LEARNING_RATES[name]
    shift = jnp.asarray([0.3j, -0.3j]) if dtype == jnp.complex64 else 0.0
    start = lambda v: jnp.asarray(v, dtype) + shift  # noqa: E731

    @jax.jit
    def ratios():
        make = ALIASES[name][0]
        return (
            _descend(make(lr_parabola), parabola, start([0.0, 0.0]), 300),
            _descend(make(lr_rosenbrock), rosenbrock, start([-0.5, 0.5]), 5000),
        )

    on_parabola, on_rosenbrock = (float(r) for r in ratios())
    assert on_parabola < 0.1, (name, on_parabola)
    assert on_rosenbrock < 0.1, (name, on_rosenbrock)
