"""The fused optimizer steps: the same numbers as the chains, optax, torch and the papers.

Three kinds of check: (1) in float64, 300 steps on the MLP against optax, torch.optim and the
NumPy paper references at the equivalence tests' bound; (2) in float32, bit for bit against a
NumPy transcription of the kernels' arithmetic, and within a few float32 roundings of the
XLA-compiled chain (which contracts multiply-adds into FMAs where the kernel does not);
(3) the contract: the chain's state, one compilation, clear errors, the chain as fallback.
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

from jaxopt_notes import _native, fused, fused_step
from tests import reference as ref
from tests.test_equivalence import STEPS, TOL, rel_err, run_jax, run_steps, run_torch

pytestmark = pytest.mark.skipif(not fused.available(), reason="no C++ compiler for the kernels")


def run_fused(opt, theta0, grad_fn, unravel, steps=STEPS):
    return run_steps(opt.init, opt.step, theta0, grad_fn, unravel, steps)


# name: (fused, optax's, NumPy paper reference)
OPTAX_CASES = {
    "momentum": (fused.sgd(0.05, 0.9), optax.sgd(0.05, 0.9), ref.sgd(0.05, 0.9)),
    "nesterov": (
        fused.sgd(0.05, 0.9, nesterov=True),
        optax.sgd(0.05, 0.9, nesterov=True),
        ref.sgd(0.05, 0.9, nesterov=True),
    ),
    "adagrad": (fused.adagrad(0.1), optax.adagrad(0.1), ref.adagrad(0.1, 1e-7, 0.1, True)),
    "rmsprop": (fused.rmsprop(0.01), optax.rmsprop(0.01), ref.rmsprop(0.01, 0.9, 1e-8, True)),
    "rmsprop_momentum": (
        fused.rmsprop(3e-4, momentum=0.9),  # the small rate of test_equivalence, for its reason
        optax.rmsprop(3e-4, momentum=0.9),
        ref.rmsprop(3e-4, 0.9, 1e-8, True, momentum=0.9),
    ),
    "adam": (fused.adam(0.01), optax.adam(0.01), ref.adam(0.01)),
    "adamw": (
        fused.adam(0.01, weight_decay=0.1),
        optax.adamw(0.01, weight_decay=0.1),
        ref.adam(0.01, weight_decay=0.1),
    ),
    "amsgrad": (
        fused.adam(0.01, amsgrad=True),
        optax.amsgrad(0.01),
        ref.adam(0.01, amsgrad="corrected"),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTAX_CASES))
def test_fused_matches_optax_and_the_paper(name):
    ours, theirs, paper = OPTAX_CASES[name]
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = run_fused(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, run_jax(theirs, theta0, grad_fn, unravel)) < TOL
    assert rel_err(mine, ref.run(paper, theta0, grad_fn, STEPS)) < TOL
    assert rel_err(mine, theta0) > 1e-3  # it moved: the comparison is not vacuous


def _apply(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def torch_cases(torch):
    o = torch.optim
    return {  # name: (fused with convention="pytorch", torch factory, NumPy reference)
        "momentum": (
            fused.sgd(0.05, 0.9, convention="pytorch"),
            lambda p: o.SGD(p, lr=0.05, momentum=0.9),
            ref.sgd(0.05, 0.9),
        ),
        "adagrad": (
            fused.adagrad(0.1, convention="pytorch"),
            lambda p: o.Adagrad(p, lr=0.1),
            ref.adagrad(0.1, 1e-10, 0.0, False),
        ),
        "rmsprop": (
            fused.rmsprop(0.01, convention="pytorch"),
            lambda p: o.RMSprop(p, lr=0.01),
            ref.rmsprop(0.01, 0.99, 1e-8, False),
        ),
        "adam": (
            fused.adam(0.01, convention="pytorch"),
            lambda p: o.Adam(p, lr=0.01),
            ref.adam(0.01),
        ),
        "adamw": (
            fused.OPTIMIZERS["adamw"](0.01, convention="pytorch"),
            lambda p: o.AdamW(p, lr=0.01),
            ref.adam(0.01, weight_decay=0.01),
        ),
        "amsgrad": (
            fused.adam(0.01, amsgrad=True, convention="pytorch"),
            lambda p: o.Adam(p, lr=0.01, amsgrad=True),
            ref.adam(0.01, amsgrad="raw"),
        ),
    }


@pytest.mark.parametrize("name", ["momentum", "adagrad", "rmsprop", "adam", "adamw", "amsgrad"])
def test_fused_pytorch_convention_matches_torch_optim(name):
    torch = pytest.importorskip(
        "torch", reason="torch is an optional extra: pip install -e .[torch]"
    )
    ours, make, paper = torch_cases(torch)[name]
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = run_fused(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, run_torch(torch, make, theta0, grad_fn)) < TOL
    assert rel_err(mine, ref.run(paper, theta0, grad_fn, STEPS)) < TOL


# ------------------------------------------------------------------------- float32, bitwise
def kernel_adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=None, amsgrad=None, bf16=False):
    """The kernel's float32 arithmetic, written out in NumPy (no FMA, reciprocal corrections);
    with ``bf16`` the moments are stored rounded to bfloat16 (ml_dtypes: to nearest even)."""
    f = np.float32
    m = v = v_max = None
    stored = (lambda x: x.astype(ml_dtypes.bfloat16).astype(f)) if bf16 else (lambda x: x)

    def step(p, g, t):
        nonlocal m, v, v_max
        m = f(1 - b1) * g + f(b1) * (0 * g if m is None else stored(m))
        v = f(1 - b2) * (g * g) + f(b2) * (0 * g if v is None else stored(v))
        r1, r2 = f(1) / (f(1) - f(b1) ** t), f(1) / (f(1) - f(b2) ** t)
        v_max = 0 * g if v_max is None else v_max
        if amsgrad == "raw":
            v_max = np.maximum(v_max, v)
            v_hat = v_max * r2
        elif amsgrad == "corrected":
            v_hat = v_max = np.maximum(v_max, v * r2)
        else:
            v_hat = v * r2
        u = (m * r1) / (np.sqrt(v_hat + f(0)) + f(eps))
        if wd is not None:
            u = u + f(wd) * p
        return p + f(-lr) * u

    return step


def kernel_rmsprop(lr, rho, eps, eps_in_sqrt, momentum=0.0):
    f = np.float32
    v = tr = None

    def step(p, g, t):
        nonlocal v, tr
        v = f(1 - rho) * (g * g) + f(rho) * (0 * g if v is None else v)
        den = np.sqrt(v + f(eps)) + f(0) if eps_in_sqrt else np.sqrt(v + f(0)) + f(eps)
        u = np.where(den > 0, g / np.where(den > 0, den, 1), f(0)).astype(f)
        if momentum:
            tr = u + f(momentum) * (0 * g if tr is None else tr)
            u = tr
        return p + f(-lr) * u

    return step


# b1 = 0.5, b2 = 0.75: b^t is a float32 number exactly for these t (3^12 < 2^24), so XLA's
# float32 pow (whose last bit depends on the fusion it lands in) cannot blur the comparison.
B = {"b1": 0.5, "b2": 0.75}
FLOAT32_CASES = {  # name: (fused, kernel transcription)
    "adam": (fused.adam(0.01, **B), kernel_adam(0.01, **B)),
    "adamw": (fused.adam(0.01, **B, weight_decay=0.1), kernel_adam(0.01, **B, wd=0.1)),
    "amsgrad": (
        fused.adam(0.01, **B, amsgrad=True),
        kernel_adam(0.01, **B, amsgrad="corrected"),
    ),
    "amsgrad_pytorch": (
        fused.adam(0.01, **B, amsgrad=True, convention="pytorch"),
        kernel_adam(0.01, **B, amsgrad="raw"),
    ),
    "adam_bf16_moments": (
        fused.adam(0.01, **B, moment_dtype=jnp.bfloat16),
        kernel_adam(0.01, **B, bf16=True),
    ),
    "rmsprop": (fused.rmsprop(0.01), kernel_rmsprop(0.01, 0.9, 1e-8, True)),
    "rmsprop_pytorch_momentum": (
        fused.rmsprop(0.01, momentum=0.9, convention="pytorch"),
        kernel_rmsprop(0.01, 0.99, 1e-8, False, momentum=0.9),
    ),
}


def _problem(n=70_001, seed=0):
    """One long leaf (several kernel chunks) and gradients with a zero stretch (the guard)."""
    rng = np.random.default_rng(seed)
    p0 = rng.normal(size=n).astype(np.float32)
    grads = [rng.normal(size=n).astype(np.float32) for _ in range(12)]
    grads[0][:100] = 0.0  # v = 0 there: rmsprop's optax form divides 0 by sqrt(eps)
    return p0, grads


@pytest.mark.parametrize("name", sorted(FLOAT32_CASES))
def test_float32_kernel_is_its_written_arithmetic_bit_for_bit(name):
    opt, transcription = FLOAT32_CASES[name]
    p0, grads = _problem()
    params, state = {"w": jnp.asarray(p0)}, opt.init({"w": jnp.asarray(p0)})
    step = jax.jit(opt.step)
    expected = p0
    for t, g in enumerate(grads, start=1):
        params, state = step(params, state, {"w": jnp.asarray(g)})
        expected = transcription(expected, g, t)
    np.testing.assert_array_equal(np.asarray(params["w"]), expected)


CHAIN_CASES = {k: lambda f=f: f(1e-2) for k, f in fused.OPTIMIZERS.items()}
CHAIN_CASES["adam_bf16_moments"] = lambda: fused.adam(1e-2, moment_dtype=jnp.bfloat16)


@pytest.mark.parametrize("name", sorted(CHAIN_CASES))
def test_float32_fused_stays_within_roundings_of_the_chain(name):
    """50 steps on three leaves: the kernel and XLA's compiled chain differ only in rounding."""
    opt = CHAIN_CASES[name]()
    rng = np.random.default_rng(1)
    shapes = {"a": (300, 7), "b": (5,), "c": (40_000,)}
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    start = params
    chain_params, chain_state, state = params, opt.init(params), opt.init(params)
    step, chain_step = jax.jit(opt.step), jax.jit(_apply(opt.tx))
    for _ in range(50):
        grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
        params, state = step(params, state, grads)
        chain_params, chain_state = chain_step(chain_params, chain_state, grads)
    assert jax.tree.structure(state) == jax.tree.structure(chain_state)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(chain_params), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        # bfloat16 moments: a float32 rounding difference rarely flips a stored moment by one
        # bfloat16 step (2^-8 relative), which moves the params by ~1e-4 over 50 steps
        bound = 1e-3 if name == "adam_bf16_moments" else 1e-5
        assert np.max(np.abs(a - b)) <= bound * max(1.0, np.max(np.abs(b))), name
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(chain_state), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if name == "adam_bf16_moments" and a.size > 1:  # one bfloat16 step, on rare elements
            assert np.max(np.abs(a - b)) <= 2**-7 * np.max(np.abs(b)) and np.mean(a != b) < 1e-3
        else:
            assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, np.max(np.abs(b))), name
    assert np.max(np.abs(np.asarray(params["c"]) - np.asarray(start["c"]))) > 1e-3  # it moved


def test_steps_from_several_threads_at_once_match_the_serial_steps():
    """The kernels share one set of helper threads: callers that overlap each still get every
    chunk of their own step done (a job a helper has not taken is replaced, and its caller
    runs it alone), so the results are the serial ones, bit for bit."""
    opt = fused.adam(1e-2)
    step = jax.jit(opt.step)
    rng = np.random.default_rng(3)
    starts = [jnp.asarray(rng.normal(size=200_000), jnp.float32) for _ in range(4)]  # 7 chunks
    grads = [jnp.asarray(rng.normal(size=200_000), jnp.float32) for _ in range(4)]

    def walk(i, out):
        params, state = [starts[i]], opt.init([starts[i]])
        for _ in range(20):
            params, state = step(params, state, [grads[i]])
        out[i] = np.asarray(params[0])

    serial, concurrent = {}, {}
    for i in range(4):
        walk(i, serial)
    threads = [threading.Thread(target=walk, args=(i, concurrent)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_array_equal(concurrent[i], serial[i])
        assert not np.array_equal(serial[i], np.asarray(starts[i]))


FLAT_CASES = {k: lambda flat, f=f: f(1e-2, flat_state=flat) for k, f in fused.OPTIMIZERS.items()}
FLAT_CASES["adam_bf16_moments"] = lambda flat: fused.adam(
    1e-2, moment_dtype=jnp.bfloat16, flat_state=flat
)


@pytest.mark.parametrize("name", sorted(FLAT_CASES))
def test_flat_state_steps_as_the_per_leaf_state_bit_for_bit(name):
    """The moments in one buffer (the leaves' elements in order): the same kernel arithmetic at
    other addresses, so the same bits; ``chain_state`` cuts them back into the chain's state."""
    per_leaf, flat = FLAT_CASES[name](False), FLAT_CASES[name](True)
    rng = np.random.default_rng(2)
    shapes = {"a": (300, 7), "b": (), "c": (40_000,), "d": (0,)}  # a scalar, an empty leaf
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    flat_params, flat_state, state = params, flat.init(params), per_leaf.init(params)
    size = sum(x.size for x in jax.tree.leaves(params))
    moments = [x for x in jax.tree.leaves(flat_state) if x.ndim == 1]
    assert moments and all(m.shape == (size,) for m in moments)
    assert jax.tree.structure(flat.chain_state(flat_state, params)) == jax.tree.structure(state)
    step = jax.jit(per_leaf.step, donate_argnums=(0, 1))
    flat_step = jax.jit(flat.step, donate_argnums=(0, 1))
    params = jax.tree.map(jnp.copy, params)  # both steps donate theirs
    for _ in range(5):
        grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
        params, state = step(params, state, grads)
        flat_params, flat_state = flat_step(flat_params, flat_state, grads)
    cut = flat.chain_state(flat_state, flat_params)
    for a, b in zip(
        jax.tree.leaves((params, state)), jax.tree.leaves((flat_params, cut)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))


def test_flat_state_without_kernels_runs_the_chain_and_needs_one_dtype(monkeypatch):
    opt = fused.adam(0.1, flat_state=True)
    params, grads = {"w": jnp.ones(3), "b": jnp.ones(2)}, {"w": jnp.full(3, 2.0), "b": jnp.ones(2)}
    want, want_state = _apply(opt.tx)(params, opt.tx.init(params), grads)
    got, _ = opt.step(params, opt.init(params), grads)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)  # the kernel: up to rounding
    monkeypatch.setattr(fused_step, "registered", lambda: "no compiler (test)")
    with pytest.warns(UserWarning, match="running the chain"):
        chain, chain_state = opt.step(params, opt.init(params), grads)
    np.testing.assert_array_equal(chain["w"], want["w"])
    for a, b in zip(
        jax.tree.leaves(opt.chain_state(chain_state, chain)),
        jax.tree.leaves(want_state),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    with jax.enable_x64(True):
        mixed = {"w": jnp.ones(3, jnp.float32), "b": jnp.ones(2, jnp.float64)}
        with pytest.raises(ValueError, match="`flat_state=True` needs params of one dtype"):
            opt.step(mixed, opt.init(mixed), mixed)
    with pytest.raises(TypeError, match="flat_state"):
        fused.sgd(0.1, flat_state="yes")


# --------------------------------------------------------------------------------- contract
def test_state_moves_between_the_chain_and_the_fused_step():
    """5 fused steps then 5 chain steps from that state equal 10 chain steps (float64)."""
    opt = fused.adam(0.01, weight_decay=0.01)
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        grads = [{"w": jnp.asarray(rng.normal(size=64))} for _ in range(10)]
        p_mixed = p_chain = {"w": jnp.ones(64)}
        s_mixed = s_chain = opt.init(p_mixed)
        chain_step = _apply(opt.tx)
        for i, g in enumerate(grads):
            p_mixed, s_mixed = (opt.step if i < 5 else chain_step)(p_mixed, s_mixed, g)
            p_chain, s_chain = chain_step(p_chain, s_chain, g)
        np.testing.assert_allclose(p_mixed["w"], p_chain["w"], rtol=1e-13)
        np.testing.assert_allclose(s_mixed[0].mu["w"], s_chain[0].mu["w"], rtol=1e-13)


def test_one_compilation_donated_and_mixed_dtypes():
    opt = fused.sgd(0.1, 0.9)
    with jax.enable_x64(True):
        params = {"a": jnp.ones(10, jnp.float32), "b": jnp.ones(3, jnp.float64)}
        state = opt.init(params)
        step = jax.jit(opt.step, donate_argnums=(0, 1))
        for _ in range(3):
            grads = {"a": jnp.ones(10, jnp.float32), "b": jnp.ones(3, jnp.float64)}
            params, state = step(params, state, grads)
        assert step._cache_size() == 1
        assert params["a"].dtype == jnp.float32 and params["b"].dtype == jnp.float64
        # v: 1, 1.9, 2.71; p = 1 - 0.1 * (1 + 1.9 + 2.71)
        np.testing.assert_allclose(params["b"], 1 - 0.1 * 5.61, rtol=1e-12)
        np.testing.assert_allclose(params["a"], 1 - 0.1 * 5.61, rtol=1e-6)


def test_bad_input_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="`momentum` must be > 0"):
        fused.sgd(0.1, 0.0)
    with pytest.raises(ValueError, match="`b1` must be in"):
        fused.adam(0.1, b1=1.5)
    with pytest.raises(ValueError, match="`weight_decay` and `amsgrad`"):
        fused.adam(0.1, weight_decay=0.1, amsgrad=True)
    with pytest.raises(ValueError, match="`moment_dtype` must be None or bfloat16"):
        fused.adam(0.1, moment_dtype=jnp.float16)
    with pytest.raises(ValueError, match="`moment_dtype` is for plain Adam"):
        fused.adam(0.1, amsgrad=True, moment_dtype=jnp.bfloat16)
    opt = fused.adam(0.1)
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    with pytest.raises(ValueError, match="float32 or float64 params.*bfloat16"):
        opt.step(params, opt.init(params), {"w": jnp.ones(3, jnp.bfloat16)})


def test_without_kernels_the_step_runs_the_chain(monkeypatch):
    opt = fused.adam(0.1)
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 2.0)}
    monkeypatch.setattr(fused_step, "registered", lambda: "no compiler (test)")
    with pytest.warns(UserWarning, match="running the chain"):
        got, _ = opt.step(params, opt.init(params), grads)
    want, _ = _apply(opt.tx)(params, opt.init(params), grads)
    np.testing.assert_array_equal(got["w"], want["w"])


def test_off_the_cpu_the_step_runs_the_chain_and_builds_nothing(monkeypatch):
    def no_build():
        raise AssertionError("built the CPU kernels for another backend")

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(fused_step, "registered", no_build)
    opt = fused.adam(0.1, flat_state=True)
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 2.0)}
    got, state = opt.step(params, opt.init(params), grads)  # no warning: the intended path
    want, _ = _apply(opt.tx)(params, opt.tx.init(params), grads)
    np.testing.assert_array_equal(got["w"], want["w"])
    assert state[0].mu.shape == (3,)  # still the flat state


@pytest.mark.parametrize("flat_state", [False, True])
def test_the_compiled_step_is_one_pass_over_the_arrays(flat_state):
    """The chain compiles to one loop per written array (mu, nu, params: three passes); the fused
    step to one custom call, with nothing else touching the arrays (no copies: donated in the
    outputs' order, the kernel's in-place aliasing holds), also with flat moments."""
    opt = fused.adam(1e-3, flat_state=flat_state)
    params = [jnp.ones(4096), jnp.ones(4096)]
    grads = [jnp.ones(4096), jnp.ones(4096)]

    def compiled_ops(step, state):
        text = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile().as_text()
        entry = text.split("ENTRY")[1]
        ops = [line.split("=", 1)[1] for line in entry.splitlines() if " = " in line]
        big = [
            op.split("(")[0].split()[-1]
            for op in ops
            if op.strip().startswith(("f32[4096]", "f32[8192]"))
        ]
        return big, entry.count("custom-call(")

    fused_ops, fused_calls = compiled_ops(opt.step, opt.init(params))
    assert fused_calls == 1 and "fusion" not in fused_ops and "copy" not in fused_ops
    chain_ops, chain_calls = compiled_ops(_apply(opt.tx), opt.tx.init(params))
    assert chain_calls == 0 and chain_ops.count("fusion") >= 3 * len(params)


def test_a_build_that_cannot_write_says_why(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    library, cxx = _native.LIBRARIES["fused"], _native.compiler()
    reason = _native.build(library, cxx, blocked / "cache" / "fused.so")
    assert reason is not None and reason.startswith("cannot build into")
    assert _native.build(library, cxx, tmp_path / "ok" / "fused.so") is None  # where it can
    assert (tmp_path / "ok" / "fused.so").stat().st_size > 0


@pytest.mark.parametrize("flat_state", [False, True])
def test_a_gradient_or_state_of_another_shape_is_refused_before_the_kernel(flat_state):
    # the kernel walks the parameter's elements: a (1,) gradient would be read past its end
    opt = fused.adam(1e-3, flat_state=flat_state)
    params = {"w": jnp.ones(1000)}
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"`grads` must have each parameter's shape, got \(1,\)"):
        opt.step(params, state, {"w": jnp.ones(1)})
    small = opt.init({"w": jnp.ones(10)})  # a state built for smaller params
    with pytest.raises(ValueError, match="state"):
        opt.step(params, small, {"w": jnp.ones(1000)})


@pytest.mark.parametrize("flat_state", [False, True])
def test_another_optimizers_state_is_refused_in_one_sentence(flat_state):
    """adagrad's state stepped by adam ended in an AttributeError from inside the step."""
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    grads = jax.tree.map(jnp.ones_like, params)
    adam = fused.adam(1e-3, flat_state=flat_state)
    other = fused.adagrad(1e-2, flat_state=flat_state)
    with pytest.raises(ValueError, match="`state` must be the state this optimizer's init"):
        adam.step(params, other.init(params), grads)
    stepped, _ = jax.jit(adam.step)(params, adam.init(params), grads)  # its own state: fine
    assert jax.tree.structure(stepped) == jax.tree.structure(params)
