"""The Hessian toolkit against spectra known in closed form (references: NumPy, jax.hessian)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxopt_notes import hessian
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian import krylov


def xy_loss(f):
    return lambda p: f(p[0], p[1])


def mlp_problem(seed=0):
    """A 5-12-1 tanh MLP with 0.5 * MSE on 64 points (85 parameters)."""
    kx, k1, k2 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (64, 5))
    y = jnp.sin(x[:, 0]) + x[:, 1]

    def init(key):
        ka, kb = jax.random.split(key)
        return {
            "l1": {"w": 0.5 * jax.random.normal(ka, (5, 12)), "b": jnp.zeros(12)},
            "l2": {"w": 0.5 * jax.random.normal(kb, (12, 1)), "b": jnp.zeros(1)},
        }

    def loss(p):
        h = jnp.tanh(x @ p["l1"]["w"] + p["l1"]["b"][None, :])
        return 0.5 * jnp.mean(((h @ p["l2"]["w"])[:, 0] + p["l2"]["b"][0] - y) ** 2)

    return loss, init


def reference_eigh(loss, params):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))


# ---------------------------------------------------------------- known critical points
@pytest.mark.parametrize(
    "f, point, values, kind",
    [
        (lambda x, y: x**2 - y**2, (0.0, 0.0), [2.0, -2.0], "saddle"),
        (lambda x, y: x**2 / 20 + y**2, (0.0, 0.0), [2.0, 0.1], "minimum"),
        (lambda x, y: -(x**2) - y**2, (0.0, 0.0), [-2.0, -2.0], "maximum"),
        (lambda x, y: x**3 - 3 * x * y**2, (0.0, 0.0), [0.0, 0.0], "degenerate"),
        (lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, (1.0, 1.0), None, "minimum"),
    ],
    ids=["saddle", "elongated-bowl", "maximum", "monkey-saddle", "rosenbrock"],
)
def test_classify_known_points(f, point, values, kind):
    with jax.enable_x64(True):
        result = hessian.classify(xy_loss(f), jnp.array(point))
    if values is None:  # Rosenbrock at its minimum: H = [[802, -400], [-400, 200]]
        values = np.linalg.eigvalsh(np.array([[802.0, -400.0], [-400.0, 200.0]]))[::-1]
    np.testing.assert_allclose(result.eigenvalues, values, rtol=1e-10, atol=1e-12)
    assert result.kind == kind
    assert result.grad_norm <= result.grad_tol
    assert result.eig_tol == pytest.approx(result.scale * np.sqrt(np.finfo(np.float64).eps))
    assert result.minimum_ratio == np.mean(np.asarray(values) > result.eig_tol)


def test_monkey_saddle_counts_zero_eigenvalues_and_is_never_guessed():
    result = hessian.classify(xy_loss(lambda x, y: x**3 - 3 * x * y**2), jnp.zeros(2))
    assert (result.kind, result.num_near_zero, result.num_positive, result.num_negative) == (
        "degenerate",
        2,
        0,
        0,
    )


def test_not_critical_and_rosenbrock_dense_matrix():
    rosen = xy_loss(lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2)
    with jax.enable_x64(True):
        np.testing.assert_allclose(hessian.dense(rosen, jnp.ones(2)), [[802, -400], [-400, 200]])
        assert hessian.classify(rosen, jnp.array([-1.2, 1.0])).kind == "not_critical"


def test_linear_least_squares_hessian_is_gram_matrix_and_psd():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (40, 6))
        y = x @ jnp.arange(6.0)
        loss = lambda w: 0.5 * jnp.mean((x @ w - y) ** 2)  # noqa: E731
        w_star = jnp.linalg.lstsq(x, y)[0]
        np.testing.assert_allclose(hessian.dense(loss, w_star), x.T @ x / 40, rtol=1e-12)
        result = hessian.classify(loss, w_star)
        gram = np.asarray(x.T @ x / 40)
    np.testing.assert_allclose(result.eigenvalues, np.linalg.eigvalsh(gram)[::-1], rtol=1e-12)
    assert result.kind == "minimum" and result.num_negative == 0 and result.minimum_ratio == 1.0


def test_softmax_regression_is_psd_with_shift_symmetry_zeros():
    d, c = 4, 3
    with jax.enable_x64(True):
        kx, ky, kw = jax.random.split(jax.random.PRNGKey(1), 3)
        x = jax.random.normal(kx, (50, d))
        labels = jax.random.randint(ky, (50,), 0, c)

        def loss(p):
            logits = x @ p["w"] + p["b"][None, :]
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(50), labels])

        params = {"w": 0.1 * jax.random.normal(kw, (d, c)), "b": jnp.zeros(c)}
        result = hessian.classify(loss, params)
    # adding one vector to every class's weights (and one number to every bias) changes nothing
    assert result.num_near_zero == d + 1
    assert result.num_negative == 0 and result.num_positive == d * c + c - (d + 1)
    assert result.minimum_ratio == pytest.approx((d * c + c - d - 1) / (d * c + c))


# ----------------------------------------------------------------------------- Lanczos
def test_lanczos_matches_eigh_on_mlp_in_float64():
    with jax.enable_x64(True):
        loss, init = mlp_problem()
        params = init(jax.random.PRNGKey(2))
        ref = reference_eigh(loss, params)
        res = hessian.eigenvalues(loss, params, k=3, which="both", method="lanczos", num_iter=60)
        flat = np.stack([jax.flatten_util.ravel_pytree(v)[0] for v in res.vectors])
    expected = np.concatenate([ref[-3:][::-1], ref[:3][::-1]])
    np.testing.assert_allclose(res.values, expected, rtol=1e-6)
    assert np.all(res.converged) and res.method == "lanczos" and res.num_hvps == 60
    np.testing.assert_allclose(flat @ flat.T, np.eye(6), atol=1e-12)


def test_lanczos_does_not_recompile_for_new_params():
    loss, init = mlp_problem()
    kwargs = dict(k=2, which="both", method="lanczos", num_iter=30)
    kernels = (core.matvec_jit, core.block_matvec_jit, krylov.step_jit, krylov._ritz_vectors)
    hessian.eigenvalues(loss, init(jax.random.PRNGKey(0)), **kwargs)
    before = [kernel._cache_size() for kernel in kernels]
    for seed in (1, 2):
        hessian.eigenvalues(loss, init(jax.random.PRNGKey(seed)), **kwargs)
    assert [kernel._cache_size() for kernel in kernels] == before


def test_lanczos_without_ghosts_in_float32():
    spectrum = jnp.arange(1.0, 201.0)  # H = diag(1..200), float32, as many steps as dimensions
    res = hessian.eigenvalues(
        lambda p: 0.5 * p @ (spectrum * p),
        jnp.ones(200),
        k=3,
        which="both",
        method="lanczos",
        num_iter=200,
    )
    np.testing.assert_allclose(res.values, [200, 199, 198, 3, 2, 1], rtol=1e-4)


def test_lanczos_restarts_on_an_invariant_subspace():
    # three distinct eigenvalues: the Krylov space of any start vector has dimension 3
    with jax.enable_x64(True):
        spectrum = jnp.repeat(jnp.array([1.0, 2.0, 3.0]), 10)
        res = hessian.eigenvalues(
            lambda p: 0.5 * p @ (spectrum * p),
            jnp.ones(30),
            k=2,
            which="both",
            method="lanczos",
            num_iter=12,
        )
    np.testing.assert_allclose(res.values, [3, 3, 1, 1], rtol=1e-10)  # no spurious zeros
    assert np.all(res.converged)


def test_eager_lanczos_with_dataset_hvp_and_unequal_batches():
    with jax.enable_x64(True):
        loss, init = mlp_problem()
        params = init(jax.random.PRNGKey(3))
        x = jax.random.normal(jax.random.PRNGKey(4), (10, 3))
        y = jnp.arange(10.0)

        def batch_loss(w, batch):
            return 0.5 * jnp.mean((jnp.tanh(batch[0] @ w) - batch[1]) ** 2)

        batches = [(x[:7], y[:7]), (x[7:], y[7:])]  # 7 + 3 examples: weighted by count
        w = jnp.array([0.3, -0.2, 0.5])
        full = hessian.dense(lambda w: batch_loss(w, (x, y)), w)
        v = jnp.array([1.0, 2.0, -1.0])
        np.testing.assert_allclose(hessian.dataset_hvp(batch_loss, w, v, batches), full @ v)
        tri = hessian.lanczos(
            lambda v: hessian.dataset_hvp(batch_loss, w, v, batches),
            jnp.ones(3),
            3,
            jax.random.PRNGKey(0),
        )
        np.testing.assert_allclose(hessian.ritz(tri)[0], np.linalg.eigvalsh(full), atol=1e-12)
    del params


# ------------------------------------------------------------------- escape, trace, density
def test_escape_step_lowers_the_loss_at_a_saddle():
    loss = xy_loss(lambda x, y: x**2 - y**2 + y**4)
    direction = hessian.escape_direction(loss, jnp.zeros(2))
    np.testing.assert_allclose(direction, [0.0, 1.0])
    step = hessian.escape_step(loss, jnp.zeros(2))
    assert step.loss_after < step.loss_before == 0.0 and step.step_size > 0
    assert hessian.escape_direction(xy_loss(lambda x, y: x**2 + y**2), jnp.zeros(2)) is None


def test_escape_direction_points_downhill_off_the_critical_point():
    loss = xy_loss(lambda x, y: x**2 - y**2)
    direction = hessian.escape_direction(loss, jnp.array([0.3, -0.1]))
    np.testing.assert_allclose(direction, [0.0, -1.0])  # the gradient's y part is +0.2


def test_hutchinson_trace_within_its_stated_error():
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.PRNGKey(0), (30, 30))
        a = (a + a.T) / 2 + 3 * jnp.eye(30)
        est = hessian.trace(lambda p: 0.5 * p @ a @ p, jnp.zeros(30), 200, jax.random.PRNGKey(1))
        exact = float(jnp.trace(a))
    assert est.std_error > 0 and est.num_samples == 200
    assert abs(est.estimate - exact) <= 3 * est.std_error


def test_spectral_density_of_a_known_spectrum():
    with jax.enable_x64(True):
        spectrum = jnp.concatenate([-jnp.ones(5), 2 * jnp.ones(15)])
        d = hessian.spectral_density(
            lambda p: 0.5 * p @ (spectrum * p),
            jnp.zeros(20),
            jax.random.PRNGKey(0),
            num_probes=3,
            num_iter=4,
        )
    assert d.fraction_positive() == pytest.approx(0.75)  # Rademacher probes: weights exactly 1/n
    assert np.sum(d.density) * (d.grid[1] - d.grid[0]) == pytest.approx(1.0, abs=1e-6)
    at = lambda t: d.density[np.argmin(np.abs(d.grid - t))]  # noqa: E731
    assert at(2.0) > at(-1.0) > 100 * at(0.5)  # two peaks, three times as much mass at 2


def test_plots_and_sharpness_tracking(tmp_path):
    loss = lambda p: 2.0 * p @ p  # noqa: E731  (top eigenvalue 4)
    params, hist = hessian.track_sharpness(
        loss, jnp.ones(3), learning_rate=0.1, num_steps=5, every=2
    )
    assert hist.steps.tolist() == [0, 2, 4, 5] and np.allclose(hist.sharpness, 4.0)
    assert hist.threshold == 20.0 and hist.loss[-1] < hist.loss[0]
    d = hessian.spectral_density(loss, jnp.ones(3), jax.random.PRNGKey(0))
    for path in (
        hessian.plot_sharpness(hist, str(tmp_path / "s.png")),
        hessian.plot_spectral_density(d, str(tmp_path / "d.png")),
    ):
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_log_density_has_no_floor():
    from jaxopt_notes.hessian.sharpness import _log_curve

    y, bottom = _log_curve(np.array([0.0, 1e-300, 2.0, 0.5, 0.0]))
    assert np.isnan(y[[0, 4]]).all() and y[2] == 2.0 and bottom == pytest.approx(2e-8)
    assert _log_curve(np.zeros(3))[1] is None


# -------------------------------------------------------------- filters and Flax NNX
def test_wrt_selects_a_block_by_prefix_or_predicate():
    def loss(p):
        return p["a"]["w"] @ p["a"]["w"] * 3 + p["b"] @ p["b"] * 0.5 + p["a"]["w"][0] * p["b"][0]

    params = {"a": {"w": jnp.zeros(2)}, "b": jnp.zeros(2)}
    assert hessian.leaf_paths(params) == ["a/w", "b"]
    for wrt in ("a", lambda path, leaf: path.startswith("a/")):
        res = hessian.eigenvalues(loss, params, k=2, wrt=wrt)
        np.testing.assert_allclose(res.values, [6.0, 6.0])
        assert not np.any(res.vectors[0]["b"])
    assert hessian.dense(loss, params, wrt="b").shape == (2, 2)


def test_nnx_state_params_and_eval_mode_check():
    model = nnx.Sequential(
        nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.tanh, nnx.Linear(4, 1, rngs=nnx.Rngs(1))
    )
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    loss_fn, params = hessian.from_nnx(model, lambda m: jnp.mean(m(x) ** 2))
    assert isinstance(params, nnx.State)
    res = hessian.eigenvalues(loss_fn, params, k=2, which="both")
    np.testing.assert_allclose(
        res.values, reference_eigh(loss_fn, params)[[-1, -2, 1, 0]], rtol=1e-4, atol=1e-5
    )
    assert isinstance(res.vectors[0], nnx.State)
    noisy = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="`module` must be in eval mode, got active Dropout"):
        hessian.from_nnx(noisy, lambda m: jnp.mean(m(x)))
    noisy.eval()
    hessian.check_eval_mode(noisy)


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda f, p: hessian.eigenvalues(f, p, k=0), ValueError, "`k` must be >= 1, got 0"),
        (lambda f, p: hessian.eigenvalues(f, p, k=3), ValueError, "`k` must be <= the number"),
        (lambda f, p: hessian.eigenvalues(f, p, which="middle"), ValueError, "`which` must be one"),
        (lambda f, p: hessian.eigenvalues(f, p, method="qr"), ValueError, "`method` must be one"),
        (lambda f, p: hessian.eigenvalues(f, p, tol=-1.0), ValueError, "`tol` must be > 0"),
        (
            lambda f, p: hessian.trace(f, p, 1, jax.random.PRNGKey(0)),
            ValueError,
            "`num_samples` must be >= 2, got 1",
        ),
        (lambda f, p: hessian.dense(f, p, wrt="nope"), ValueError, "`wrt` must select at least"),
        (lambda f, p: hessian.dense(f, p, max_size=1), ValueError, "at most `max_size`=1"),
        (lambda f, p: hessian.hvp(3.0, p, p), TypeError, "`loss_fn` must be callable"),
        (lambda f, p: hessian.dense(f, jnp.arange(2)), TypeError, "must be float arrays"),
    ],
)
def test_bad_input_errors_name_argument_rule_and_value(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        call(lambda p: jnp.sum(p**2), jnp.zeros(2))


@jax.custom_vjp
def _sin_custom(x):
    return jnp.sin(x)


_sin_custom.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))


def test_losses_with_custom_vjp_ops_fall_back_to_reverse_over_reverse():
    """JAX cannot take forward-mode derivatives of a custom_vjp op (LeNet's fast conv is one):
    the HVP, the dense Hessian and Lanczos must still work, and give -diag(sin x) here."""
    x = jnp.linspace(0.1, 3.0, 12)
    loss = lambda p: jnp.sum(_sin_custom(p))  # noqa: E731
    expected = -jnp.sin(x)
    v = jnp.arange(12.0)
    np.testing.assert_allclose(hessian.hvp(loss, x, v), expected * v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hessian.dense(loss, x), jnp.diag(expected), atol=1e-6)
    ends = hessian.eigenvalues(loss, x, k=1, which="both", method="lanczos", num_iter=12)
    np.testing.assert_allclose(ends.values, [expected.max(), expected.min()], rtol=1e-4)


def test_hvp_on_the_library_lenet():
    """LeNet's convolution has a custom VJP; its HVP must match a central difference of the
    gradient (float64, the smooth classic variant so the difference is accurate)."""
    from jaxopt_notes import models

    with jax.enable_x64(True):
        net = models.LeNet(in_shape=(8, 8, 1), num_classes=10, variant="classic", rngs=nnx.Rngs(0))
        apply, params = models.functional(net)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1), jnp.float64)
        loss = lambda p: jnp.mean(apply(p, x) ** 2)  # noqa: E731
        v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(1), a.shape, a.dtype), params)
        hv = jax.jit(lambda p, v: hessian.hvp(loss, p, v))(params, v)  # eager: 10x slower
        h = 1e-5
        shift = lambda s: jax.tree.map(lambda p, d: p + s * h * d, params, v)  # noqa: E731
        grad = jax.jit(jax.grad(loss))
        fd = jax.tree.map(lambda a, b: (a - b) / (2 * h), grad(shift(1)), grad(shift(-1)))
        for a, b in zip(jax.tree.leaves(hv), jax.tree.leaves(fd), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7 * float(jnp.abs(b).max()))
