"""``hessian.find_critical`` on functions whose critical points are known, and on a small MLP
checked against ``eigh(jax.hessian(...))`` of the point it found."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_notes import hessian


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def xy(f):
    return lambda p: f(p[0], p[1])


@pytest.mark.parametrize(
    "f, start, point, kind",
    [
        (lambda x, y: x**2 - y**2 + y**4, (0.3, 0.2), (0.0, 0.0), "saddle"),
        (lambda x, y: x**2 - y**2 + y**4, (0.3, 0.6), (0.0, 0.5**0.5), "minimum"),
        (lambda x, y: -(x**2) - 2 * y**2 + x**4, (0.3, -0.2), (0.0, 0.0), "maximum"),
        (lambda x, y: x**3 - 3 * x * y**2, (0.3, 0.2), (0.0, 0.0), "degenerate"),
        (lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, (0.0, 0.0), (1.0, 1.0), "minimum"),
    ],
    ids=["saddle", "minimum", "maximum", "monkey-saddle", "rosenbrock"],
)
def test_reaches_known_critical_points_of_every_kind(x64, f, start, point, kind):
    found = hessian.find_critical(xy(f), jnp.array(start))
    assert found.status == "critical" and found.reached
    assert found.grad_norm <= found.tol == pytest.approx(found.rtol * found.grad_norm_start)
    assert found.rtol == pytest.approx(np.sqrt(np.finfo(np.float64).eps))
    assert found.params.dtype == jnp.float64
    # the monkey saddle's zero Hessian makes Newton linear: |g| ~ |x|^2, x to sqrt(tol)
    np.testing.assert_allclose(found.params, point, atol=1e-4 if kind == "degenerate" else 1e-7)
    assert hessian.classify(xy(f), jnp.array(point)).kind == kind
    assert found.grad_norm_history[0] == found.grad_norm_start
    assert len(found.grad_norm_history) == found.iterations + 1 == len(found.loss_history)
    assert np.all(np.diff(found.grad_norm_history) < 0)  # every accepted step lowers |g|


def test_says_budget_where_it_does_not_get_there(x64):
    """From Rosenbrock's classic start ||g|| has no critical point downhill: its valley runs
    off to |g| -> 1 at infinity. The search must say it did not arrive."""
    rosen = xy(lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2)
    found = hessian.find_critical(rosen, jnp.array([-1.2, 1.0]), max_iter=30)
    assert found.status == "budget" and not found.reached and found.grad_norm > 1
    assert found.iterations == 30 and "ran out of budget" in str(found)
    few = hessian.find_critical(rosen, jnp.array([-1.2, 1.0]), max_hvps=5)
    assert few.status == "budget" and few.num_hvps <= 6


def test_gradient_flat_when_the_gradient_is_a_null_vector(x64):
    """x + y^2 has no critical point; at y = 0 its gradient (1, 0) spans H's null space."""
    found = hessian.find_critical(xy(lambda x, y: x + y**2), jnp.array([0.0, 0.5]))
    assert found.status == "gradient_flat" and found.residual_ratio == pytest.approx(1.0)
    assert found.grad_norm == pytest.approx(1.0) and found.grad_curvature < 1e-12
    np.testing.assert_allclose(found.params[1], 0.0, atol=1e-12)


def test_flat_descents_walk_out_of_a_gradient_flat_point_to_the_minimum(x64):
    """x^4/4 + x + y^2: at x = 0 the curvature along x is 0 and the slope 1, a gradient-flat
    point; downhill along -g lies the one critical point, the minimum at x = -1."""
    f = xy(lambda x, y: x**4 / 4 + x + y**2)
    stuck = hessian.find_critical(f, jnp.array([0.0, 0.0]))
    assert stuck.status == "gradient_flat" and stuck.flat_descents == 0
    found = hessian.find_critical(f, jnp.array([0.0, 0.0]), flat_descents=3)
    assert found.status == "critical" and 1 <= found.flat_descents <= 3
    np.testing.assert_allclose(found.params, [-1.0, 0.0], atol=1e-7)
    assert "flat descent" in str(found)
    # no critical point downhill at all (x + y^2): the walks run out and it says so
    slope = hessian.find_critical(xy(lambda x, y: x + y**2), jnp.array([0.0, 0.5]), flat_descents=2)
    assert slope.status == "gradient_flat" and slope.flat_descents == 2
    with pytest.raises(ValueError, match="flat_descents"):
        hessian.find_critical(f, jnp.array([0.0, 0.0]), flat_descents=-1)


def test_a_saddle_of_a_two_layer_linear_network(x64):
    """``1/2 ||W2 W1 - A||^2``, one hidden unit, A = diag(3, 2, 1): its critical points are
    W2 W1 = a_i e_i e_i^T with loss (sum a_j^2 - a_i^2) / 2 (Baldi and Hornik 1989); only
    i = 1 is a minimum. Started beside the i = 2 one, the search reaches it, a saddle."""
    a = jnp.diag(jnp.array([3.0, 2.0, 1.0]))

    def loss(p):
        return 0.5 * jnp.sum((p["w2"] @ p["w1"] - a) ** 2)

    e2 = jnp.array([0.0, 1.0, 0.0])
    noise = 0.05 * jax.random.normal(jax.random.PRNGKey(0), (2, 3))
    start = {"w1": (2**0.5 * e2 + noise[0])[None, :], "w2": (2**0.5 * e2 + noise[1])[:, None]}
    found = hessian.find_critical(loss, start)
    assert found.status == "critical" and found.loss == pytest.approx(0.5 * (9 + 1), rel=1e-10)
    np.testing.assert_allclose(
        found.params["w2"] @ found.params["w1"], 2 * jnp.outer(e2, e2), atol=1e-8
    )
    c = hessian.classify(loss, found.params)
    assert c.kind == "saddle" and c.num_negative >= 1


def _digits_mlp(hidden, n=300):
    import optax

    from jaxopt_notes import data

    d = data.load_digits()
    x = jnp.asarray(d.x_train[:n].reshape(n, -1) / 255.0)
    y = jnp.asarray(d.y_train[:n])

    def loss(p):  # weight decay: a finite minimum (cross-entropy alone has none on separable data)
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        ce = optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], y).mean()
        return ce + 5e-4 * sum(jnp.sum(v**2) for v in jax.tree.leaves(p))

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {
        "w1": jax.random.normal(k1, (64, hidden)) / 8,
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, 10)) / hidden**0.5,
        "b2": jnp.zeros(10),
    }
    return loss, params


def test_a_small_mlp_against_dense_eigh(x64):
    """An MLP of 1,210 parameters on the digits, trained by Adam, then driven to float64's
    tolerance; the classification there agrees with eigh of jax.hessian."""
    import optax

    loss, params = _digits_mlp(16)
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        u, s = opt.update(jax.grad(loss)(p), s)
        return optax.apply_updates(p, u), s

    for _ in range(3000):  # near the minimum: from 2000 steps it stalls gradient-flat
        params, state = step(params, state)
    found = hessian.find_critical(loss, params)
    assert found.status == "critical" and found.grad_norm <= 1e-8 * found.grad_norm_start
    flat, unravel = jax.flatten_util.ravel_pytree(found.params)
    lam = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))
    c = hessian.classify(loss, found.params, grad_scale=found.grad_norm_start)
    np.testing.assert_allclose(c.eigenvalues, lam[::-1], rtol=1e-7, atol=1e-12)
    expected = "minimum" if lam.min() > c.eig_tol else "saddle"
    assert c.kind == expected and c.grad_norm <= c.grad_tol


def test_float32_keeps_its_dtype_and_a_float32_tolerance():
    found = hessian.find_critical(xy(lambda x, y: x**2 - y**2), jnp.array([0.3, 0.2]))
    assert found.params.dtype == jnp.float32 and found.status == "critical"
    assert found.rtol == pytest.approx(np.sqrt(np.finfo(np.float32).eps))


def test_repr_and_str_are_short_sentences(x64):
    found = hessian.find_critical(xy(lambda x, y: x**2 - y**2), jnp.array([0.3, 0.2]))
    assert repr(found).startswith("CriticalPoint(status='critical'") and len(repr(found)) < 200
    assert str(found).startswith("reached a critical point") and "[" not in str(found)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"rtol": 0.0}, ValueError, "`rtol` must be in (0, 1), got 0.0"),
        ({"atol": -1.0}, ValueError, "`atol` must be >= 0, got -1.0"),
        ({"max_iter": 0}, ValueError, "`max_iter` must be >= 1, got 0"),
        ({"max_hvps": 1.5}, TypeError, "`max_hvps` must be an integer, got 1.5"),
        ({"inner_rtol": 2.0}, ValueError, "`inner_rtol` must be in (0, 1), got 2.0"),
        ({"flat_ratio": 0.0}, ValueError, "`flat_ratio` must be in (0, 1], got 0.0"),
        ({"callback": 3}, TypeError, "`callback` must be callable, got 3"),
    ],
)
def test_bad_arguments_name_the_rule_and_value(kwargs, error, message):
    with pytest.raises(error) as info:
        hessian.find_critical(xy(lambda x, y: x**2 - y**2), jnp.array([0.3, 0.2]), **kwargs)
    assert str(info.value).startswith(message)


def test_bad_params_and_a_gauss_newton_matrix_are_refused():
    with pytest.raises(TypeError, match="`params` leaves must be float arrays"):
        hessian.find_critical(xy(lambda x, y: x**2), jnp.array([1, 2]))
    ggn = hessian.GaussNewton(lambda p: p, lambda out: jnp.sum(out**2))
    with pytest.raises(TypeError, match="never finds a saddle"):
        hessian.find_critical(ggn, jnp.array([1.0, 2.0]))


# ------------------------------------------------------------ classification on networks
def test_classify_states_its_gradient_rule(x64):
    f = xy(lambda x, y: x**2 - y**2)
    scaled = hessian.classify(f, jnp.array([1e-9, 0.0]), grad_scale=0.5, grad_rtol=1e-6)
    assert scaled.grad_rule == "grad_rtol x grad_scale" and scaled.grad_tol == 5e-7
    assert scaled.kind == "saddle" and str(scaled).startswith("a saddle: |g| 2e-09")
    old = hessian.classify(f, jnp.array([1e-9, 0.0]))
    assert old.grad_rule.startswith("grad_rtol x lambda_max x max(1, |params|)")
    with pytest.raises(ValueError, match="`grad_scale` must be > 0, got -1.0"):
        hessian.classify(f, jnp.zeros(2), grad_scale=-1.0)


@pytest.mark.parametrize(
    "f, point, better",
    [
        (lambda x, y: x**2 - 0.1 * y**2, (1.0, 0.0), "gradient"),  # steep slope, weak bend
        (lambda x, y: x**2 - y**2, (0.3, 0.01), "negative_curvature"),  # near the saddle
        (lambda x, y: x**2 + y**2, (0.3, 0.1), "gradient"),  # no negative curvature at all
    ],
)
def test_a_non_critical_point_says_which_step_the_model_prefers(x64, f, point, better):
    c = hessian.classify(xy(f), jnp.array(point))
    assert c.kind == "not_critical" and c.better_step == better
    assert c.gradient_decrease > 0 and c.model_radius > 0
    assert len(c.most_negative) == c.num_negative and np.all(c.most_negative < 0)
    # along -g at the Cauchy length r the model falls by r|g| - r^2 g.H.g / (2|g|^2)
    g = np.array(jax.grad(xy(f))(jnp.array(point)))
    h = np.array(jax.hessian(xy(f))(jnp.array(point)))
    r = c.model_radius
    expected = r * np.linalg.norm(g) - 0.5 * r**2 * g @ h @ g / (g @ g)
    assert c.gradient_decrease == pytest.approx(expected, rel=1e-10)


def test_lanczos_minimum_ratio_comes_with_an_error_that_covers_the_truth(x64):
    """A quadratic with eigenvalues -1 .. 3 (n = 400): 3/4 of them positive."""
    lam = jnp.linspace(-1.0, 3.0, 400)

    def f(p):
        return 0.5 * jnp.sum(lam * p**2)

    c = hessian.classify(f, jnp.zeros(400), k=2, method="lanczos", density_probes=8)
    truth = float(np.mean(np.asarray(lam) > c.eig_tol))
    assert not c.complete and c.minimum_ratio_error > 0
    assert abs(c.minimum_ratio - truth) <= c.minimum_ratio_error
    assert "stochastic Lanczos quadrature, 8 probe(s)" in c.minimum_ratio_source
    assert c.num_extra_hvps == 8 * 32 + 1 and c.kind == "saddle"
    np.testing.assert_allclose(c.most_negative, [-1.0, -0.98997494], rtol=1e-6)


def test_reprs_show_numbers_not_arrays(x64):
    loss, params = _digits_mlp(16, n=50)
    c = hessian.classify(loss, params)
    eig = hessian.eigenvalues(loss, params, k=3, which="both")
    for text in (repr(c), str(c), repr(eig), str(eig)):
        assert len(text) < 300 and "array" not in text.lower() and "\n" not in text
    assert c.eigenvalues.shape == (1210,) and eig.flat_vectors.shape == (6, 1210)
