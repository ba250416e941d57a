"""The Hessian engine: stopping Lanczos, both loops, data-set-wide products, GGN, diagonal,
per-layer spectra, blocked probes and non-finite input (references: jax.hessian + eigh)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_notes import hessian, second_order


def data_problem(n=37, d=4, seed=0, dtype=jnp.float64):
    kx, kw = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (n, d), dtype)
    y = jnp.sin(x @ jnp.arange(1.0, d + 1, dtype=dtype))

    def batch_loss(p, batch):
        xb, yb = batch
        h = jnp.tanh(xb @ p["w1"])
        return 0.5 * jnp.mean((h @ p["w2"] - yb) ** 2)

    params = {"w1": 0.7 * jax.random.normal(kw, (d, 3), dtype), "w2": jnp.ones(3, dtype)}
    return batch_loss, (x, y), params


def full_hessian(loss, params):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))


def test_lanczos_stops_once_converged_and_says_so():
    with jax.enable_x64(True):
        spectrum = jnp.concatenate([jnp.array([10.0, 5.0]), jnp.linspace(0.0, 1.0, 298)])
        loss = lambda p: 0.5 * p @ (spectrum * p)  # noqa: E731
        res = hessian.eigenvalues(loss, jnp.ones(300), k=2, method="lanczos", tol=1e-8)
        capped = hessian.eigenvalues(
            loss, jnp.ones(300), k=2, method="lanczos", max_iter=3, tol=1e-12
        )
    assert res.iterations < 100 and res.num_hvps == res.iterations  # residuals: no new product
    np.testing.assert_allclose(res.values, [10.0, 5.0], rtol=1e-10)
    fresh = np.linalg.norm(  # ||H v - lambda v|| by a fresh product (H = diag(spectrum))
        res.flat_vectors * spectrum - res.values[:, None] * res.flat_vectors, axis=1
    )
    np.testing.assert_allclose(res.residuals, fresh, rtol=1e-6, atol=1e-14)
    assert np.all(res.converged) and np.all(res.residuals <= 1e-8 * res.scale)
    assert capped.iterations == 3 and not np.all(capped.converged)


@pytest.mark.parametrize("which", ["both", pytest.param("smallest", marks=pytest.mark.slow)])
def test_host_and_device_loops_agree_with_eigh(which):
    with jax.enable_x64(True):
        batch_loss, data, params = data_problem()
        loss = lambda p: batch_loss(p, data)  # noqa: E731
        ref = np.linalg.eigvalsh(full_hessian(loss, params))
        runs = [
            hessian.eigenvalues(
                loss, params, k=2, which=which, method="lanczos", tol=1e-9, loop=loop
            )
            for loop in ("host", "device")
        ]
    want = {
        "largest": ref[::-1][:2],
        "smallest": ref[:2][::-1],
        "both": np.r_[ref[::-1][:2], ref[:2][::-1]],
    }[which]
    for res in runs:
        np.testing.assert_allclose(res.values, want, rtol=1e-7, atol=1e-10)
    assert runs[0].iterations == runs[1].iterations and [r.loop for r in runs] == ["host", "device"]


def test_lanczos_extremes_runs_inside_jit():
    h = jnp.diag(jnp.arange(1.0, 21.0))
    run = jax.jit(
        lambda v: hessian.lanczos_extremes(
            lambda u: h @ u, v, jax.random.key(0), k=1, which="both", max_iter=20, tol=1e-5
        )
    )
    res = run(jnp.ones(20))
    np.testing.assert_allclose(res.values, [20.0, 1.0], rtol=1e-4)


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-5), (jnp.float64, 1e-10)])
@pytest.mark.parametrize("loop", ["host", "device"])
def test_dataset_hvp_equals_full_batch_hvp(dtype, rtol, loop):
    with jax.enable_x64(dtype == jnp.float64):
        batch_loss, data, params = data_problem(dtype=dtype)
        loss = hessian.over_dataset(batch_loss, data, batch_size=8)  # 4 batches + a tail of 5
        v = jax.tree.map(
            lambda a: jnp.cos(jnp.arange(a.size, dtype=dtype)).reshape(a.shape), params
        )
        full = hessian.hvp(lambda p: batch_loss(p, data), params, v)
        spec, operands = hessian._core.problem(loss, params, None)
        flat_v = jax.flatten_util.ravel_pytree(v)[0]
        ours = hessian._core.Operator(spec, params, operands, loop)(flat_v[None])[0]
        expected = np.asarray(jax.flatten_util.ravel_pytree(full)[0])
        values = float(loss(params)), float(batch_loss(params, data))
    assert loss.num_batches == 5 and loss.num_examples == 37 and ours.dtype == dtype
    np.testing.assert_allclose(ours, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    np.testing.assert_allclose(*values, rtol=rtol)


def test_dataset_spectrum_and_batch_spread():
    with jax.enable_x64(True):
        batch_loss, data, params = data_problem(n=40)
        loss = hessian.over_dataset(batch_loss, data, batch_size=10)
        ref = np.linalg.eigvalsh(full_hessian(lambda p: batch_loss(p, data), params))
        res = hessian.eigenvalues(loss, params, k=1, which="both", method="lanczos", tol=1e-9)
        dense = hessian.eigenvalues(loss, params, k=1, which="both", method="dense")
        spread = hessian.batch_spread(loss, params, num_batches=3, method="dense")
    np.testing.assert_allclose(res.values, [ref[-1], ref[0]], rtol=1e-8)
    np.testing.assert_allclose(dense.values, [ref[-1], ref[0]], rtol=1e-10)
    assert spread.dataset == pytest.approx(ref[-1]) and spread.per_batch.shape == (3,)
    assert spread.relative_spread > 0  # ten examples do not see the forty's curvature


def test_gauss_newton_is_jt_h_j_and_psd():
    with jax.enable_x64(True):
        batch_loss, (x, y), params = data_problem()
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        model = lambda p: jnp.tanh(x @ p["w1"]) @ p["w2"]  # noqa: E731
        out_loss = lambda out: 0.5 * jnp.mean((out - y) ** 2)  # noqa: E731
        ggn = hessian.GaussNewton(model, out_loss)
        jac = jax.jacfwd(lambda f: model(unravel(f)))(flat)
        expected = np.asarray(jac.T @ jac / len(y))  # H_out = I / n for 0.5 * mean squares
        np.testing.assert_allclose(hessian.dense(ggn, params), expected, rtol=1e-10, atol=1e-14)
        g_vals = hessian.eigenvalues(ggn, params, k=3, which="both").values
        h_vals = hessian.eigenvalues(lambda p: batch_loss(p, (x, y)), params, k=3, which="both")
    assert float(g_vals[-1]) > -1e-12  # PSD
    assert float(h_vals.values[-1]) < float(g_vals[-1])  # the Hessian's negative curvature


def test_diagonal_exact_and_estimated():
    with jax.enable_x64(True):
        batch_loss, data, params = data_problem()
        loss = lambda p: batch_loss(p, data)  # noqa: E731
        ref = np.diag(full_hessian(loss, params))
        exact = hessian.diagonal(loss, params)
        est = hessian.diagonal(loss, params, jax.random.PRNGKey(0), num_samples=400)
        flat = lambda t: np.asarray(jax.flatten_util.ravel_pytree(t)[0])  # noqa: E731
        d_exact, d_est, se = flat(exact.diagonal), flat(est.diagonal), flat(est.std_error)
    assert exact.exact and exact.num_hvps == ref.size
    np.testing.assert_allclose(d_exact, ref, rtol=1e-10, atol=1e-14)
    assert not est.exact and np.all(np.abs(d_est - ref) <= 5 * se) and np.all(se > 0)


def test_layer_spectra_are_the_diagonal_blocks():
    with jax.enable_x64(True):
        batch_loss, data, params = data_problem()
        loss = lambda p: batch_loss(p, data)  # noqa: E731
        h = full_hessian(loss, params)
        rows = hessian.layer_spectra(loss, params)
    assert [r.layer for r in rows] == ["w1", "w2"] == hessian.layers(params)
    blocks = {"w1": h[:12, :12], "w2": h[12:, 12:]}  # ravel order: w1 (4x3), then w2
    for r in rows:
        lam = np.linalg.eigvalsh(blocks[r.layer])
        assert r.size == len(lam) and r.largest == pytest.approx(lam[-1])
        assert r.smallest == pytest.approx(lam[0])
    assert hessian.layer_table(rows).count("\n") == 3


def test_blocked_trace_and_density_match_their_single_probe_forms():
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.PRNGKey(0), (30, 30))
        a = (a + a.T) / 2 + 3 * jnp.eye(30)
        loss = lambda p: 0.5 * p @ a @ p  # noqa: E731
        key = jax.random.PRNGKey(1)
        one = hessian.trace(loss, jnp.zeros(30), 20, key, block_size=1)
        block = hessian.trace(loss, jnp.zeros(30), 20, key, block_size=7)
        early = hessian.trace(loss, jnp.zeros(30), 400, key, rtol=0.05)
        dens = [
            hessian.spectral_density(loss, jnp.zeros(30), key, num_iter=10, loop=loop)
            for loop in ("host", "device")
        ]
    np.testing.assert_allclose(one.samples, block.samples, rtol=1e-12)
    assert early.converged and early.num_samples < 400 and early.num_samples % 10 == 0
    assert early.std_error <= 0.05 * abs(early.estimate)
    np.testing.assert_allclose(dens[0].nodes, dens[1].nodes, rtol=1e-9)
    assert dens[0].num_hvps == 4 * 10


def _outlier_quadratic(n=80, outliers=(40.0, 25.0, -15.0), seed=0):
    """``0.5 p^T A p``, A rotated, spectrum: a few large eigenvalues over many in [-1, 1]."""
    q = np.linalg.qr(np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, n))))[0]
    rest = np.asarray(jax.random.uniform(jax.random.PRNGKey(seed + 1), (n - len(outliers),)))
    spectrum = np.r_[outliers, 2 * rest - 1]
    a = q @ np.diag(spectrum) @ q.T
    return (lambda p: 0.5 * p @ (jnp.asarray(a) @ p)), a


def test_deflated_trace_takes_the_krylov_space_exactly_and_estimates_the_rest():
    n, m = 80, 6
    with jax.enable_x64(True):
        loss, a = _outlier_quadratic(n)
        key = jax.random.PRNGKey(5)
        est = hessian.trace(loss, jnp.zeros(n), 400, key, deflate=m)
        whole = hessian.trace(loss, jnp.zeros(n), 4, key, deflate=n)
        # the NumPy reference of the exact part: the same start, its Krylov space by QR
        v = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (n,), jnp.float64))
        krylov = np.stack([np.linalg.matrix_power(a, i) @ v for i in range(m)], axis=1)
        basis = np.linalg.qr(krylov)[0]
    assert est.exact_part == pytest.approx(np.trace(basis.T @ a @ basis), rel=1e-8)
    assert est.deflated == m and est.num_samples == 400
    assert abs(est.estimate - np.trace(a)) <= 4 * est.std_error  # unbiased, within its error
    assert whole.estimate == pytest.approx(np.trace(a), abs=1e-8) and whole.std_error < 1e-8


def test_deflation_removes_the_variance_of_outliers_and_not_of_a_flat_spectrum():
    n, m, probes = 80, 8, 200
    key = jax.random.PRNGKey(2)

    def variance_ratio(loss):
        plain = hessian.trace(loss, jnp.zeros(n), probes, key)
        deflated = hessian.trace(loss, jnp.zeros(n), probes, key, deflate=m)
        return (deflated.std_error / plain.std_error) ** 2

    with jax.enable_x64(True):
        outliers = variance_ratio(_outlier_quadratic(n)[0])
        # sabotage: the same rotation, no outliers (the spectrum flat in [-1, 1]): little to take
        flat = variance_ratio(_outlier_quadratic(n, outliers=(1.0, -1.0, 1.0))[0])
    assert outliers < 0.1  # the three outliers held ~all of ||A||_F^2
    assert flat > 0.7  # removing m of n directions leaves ~(n - m) / n of the variance


def test_deflated_trace_refuses_bad_arguments():
    loss = lambda p: jnp.sum(p**2)  # noqa: E731
    with pytest.raises(ValueError, match="`deflate` must be"):
        hessian.trace(loss, jnp.zeros(5), 4, jax.random.PRNGKey(0), deflate=-1)
    with pytest.raises(ValueError, match="`prior` must be empty with `deflate`=2"):
        hessian.trace(loss, jnp.zeros(5), 4, jax.random.PRNGKey(0), deflate=2, prior=[1.0])


def _nan_loss(p):
    return jnp.sum(p**2) * jnp.log(p[0] - 1.0)  # log of a negative number: nan at 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: hessian.classify(_nan_loss, jnp.zeros(3)),
        lambda: hessian.escape_direction(_nan_loss, jnp.zeros(3)),
        lambda: hessian.trace(_nan_loss, jnp.zeros(3), 4, jax.random.PRNGKey(0)),
        lambda: hessian.spectral_density(_nan_loss, jnp.zeros(3), jax.random.PRNGKey(0)),
        lambda: hessian.eigenvalues(_nan_loss, jnp.zeros(3), method="lanczos"),
    ],
    ids=["classify", "escape_direction", "trace", "spectral_density", "eigenvalues"],
)
def test_non_finite_loss_is_one_sentence_never_a_nan_answer(call):
    with pytest.raises(ValueError, match=r"`loss_fn` at `params` must be finite .* got nan"):
        call()


def test_non_finite_products_are_refused():
    loss = lambda p: jnp.sum(jnp.abs(p) ** 1.5)  # noqa: E731  (finite; H = inf at 0)
    with pytest.raises(ValueError, match="must be finite, got .* non-finite values"):
        hessian.eigenvalues(loss, jnp.array([0.0, 1.0]), method="lanczos")


def test_escape_saddles_by_lanczos_on_a_network():
    """Stalled exactly at a saddle of a tanh network (all-zero weights), the escape step goes
    along the most negative curvature found by Lanczos and lowers the loss."""
    with jax.enable_x64(True):
        batch_loss, data, params = data_problem()
        params = jax.tree.map(jnp.zeros_like, params)
        loss = lambda p: batch_loss(p, data)  # noqa: E731
        lam_min = np.linalg.eigvalsh(full_hessian(loss, params))[0]
        opt = second_order.escape_saddles(step_size=0.1, grad_tol=1e-8, eig_tol=1e-8)
        g = jax.grad(loss)(params)
        updates, state = jax.jit(lambda p, s: opt.update(g, s, p, loss_fn=loss))(
            params, opt.init(params)
        )
        new = optax.apply_updates(params, updates)
        step = float(jnp.linalg.norm(jax.flatten_util.ravel_pytree(updates)[0]))
        before, after = float(loss(params)), float(loss(new))
    assert lam_min < -1e-8 and int(state.escapes) == 1  # the zero network is a strict saddle
    assert after < before and step == pytest.approx(0.1, rel=1e-10)


def rotated_quadratic(n=60, seed=0):
    """``0.5 p^T A p`` with a known spectrum (two separated tops, the rest in [0.1, 1]) rotated
    by a random orthogonal matrix, so the start vector's components are not trivial."""
    q = np.linalg.qr(np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, n))))[0]
    spectrum = np.r_[8.0, 6.0, np.linspace(0.1, 1.0, n - 2)]
    a = jnp.asarray(q @ np.diag(spectrum) @ q.T)
    return (lambda p: 0.5 * p @ (a @ p)), jnp.zeros(n) + 0.1


def test_min_iter_runs_past_convergence_and_keeps_the_answer():
    with jax.enable_x64(True):
        loss, params = rotated_quadratic()
        ref = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(params)))
        early = hessian.eigenvalues(loss, params, method="lanczos", tol=1e-3, steps_per_call=1)
        longer = hessian.eigenvalues(
            loss, params, method="lanczos", tol=1e-3, steps_per_call=1, min_iter=40
        )
    assert early.iterations < 40  # so min_iter=40 has something to change
    assert longer.iterations == 40 and longer.num_hvps == 40
    assert len(longer.tridiagonal.alpha) == len(longer.tridiagonal.beta) == 40
    for res in (early, longer):
        assert res.values[0] == pytest.approx(ref[-1], rel=1e-3) and res.converged.all()


def test_steps_per_call_changes_only_when_convergence_is_tested():
    with jax.enable_x64(True):
        loss, params = rotated_quadratic()
        ref = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(params)))
        runs = {
            c: hessian.eigenvalues(
                loss, params, k=2, method="lanczos", tol=1e-8, steps_per_call=c, loop="host"
            )
            for c in (1, 3, 7)
        }
        with pytest.raises(ValueError, match="`steps_per_call` must be"):
            hessian.eigenvalues(loss, params, method="lanczos", steps_per_call=0)
    base = runs[1].iterations
    for c, res in runs.items():
        np.testing.assert_allclose(res.values, ref[::-1][:2], rtol=1e-8)
        assert res.converged.all() and res.loop == "host"
        assert base <= res.iterations < base + c and res.iterations % c == 0
        np.testing.assert_allclose(  # the same Krylov sequence, however it is chunked
            res.tridiagonal.alpha[:base], runs[1].tridiagonal.alpha, rtol=1e-9, atol=1e-12
        )


def test_lanczos_chunks_use_the_linearisation_made_once_per_run():
    from jaxopt_notes.hessian import _core, krylov

    with jax.enable_x64(True):
        batch_loss, data, params = data_problem()
        loss = lambda p: batch_loss(p, data)  # noqa: E731
        other = jax.tree.map(lambda a: 1.5 * a, params)
        spec, extra = _core.problem(loss, params, None)
        n = _core.num_selected(params, spec.mask)
        v0 = jnp.linspace(1.0, 2.0, n)

        def first_products(lin, at):
            state, v = krylov.init_jit(v0, 4, True)
            state = _core._lanczos_chunk_jit(
                at, extra, state, v, jax.random.PRNGKey(0), lin, spec=spec, steps=4, rows=8
            )[0]
            return np.asarray(state.hq)

        own = first_products(_core._linearization_jit(params, extra, spec=spec), params)
        # the point's arrays are taken from the linearisation, not recomputed at `at`: given
        # another point's linearisation, the products are that point's
        swapped = first_products(_core._linearization_jit(other, extra, spec=spec), params)
        np.testing.assert_allclose(own, first_products(None, params), rtol=1e-12)
        np.testing.assert_allclose(swapped, first_products(None, other), rtol=1e-12)
        assert not np.allclose(own, swapped)
        h = full_hessian(loss, params)
        q0 = np.asarray(v0) / np.linalg.norm(v0)
        np.testing.assert_allclose(own[0], h @ q0, rtol=1e-10)


def test_rademacher_start_doubles_as_hutchinson_sample_and_slq_probe():
    """With ``start="rademacher"`` the run's start is the probe ``z`` that
    ``jax.random.rademacher(key, (n,))`` draws, so ``n * alpha_0 = z^T H z`` (a Hutchinson
    sample) and the tridiagonal's Ritz values and weights are an SLQ probe: with every step
    run they are the whole spectrum, weighted by ``(q_i . z)^2 / n``."""
    with jax.enable_x64(True):
        loss, params = rotated_quadratic(n=30)
        h = np.asarray(jax.hessian(loss)(params))
        lam, vecs = np.linalg.eigh(h)
        key = jax.random.PRNGKey(5)
        res = hessian.eigenvalues(
            loss, params, method="lanczos", key=key, start="rademacher", min_iter=30, tol=1e-6
        )
        z = np.asarray(jax.random.rademacher(key, (30,), jnp.float64))
        with pytest.raises(ValueError, match="`start` must be one of"):
            hessian.eigenvalues(loss, params, method="lanczos", start="ones")
    tri = res.tridiagonal
    assert res.iterations == 30 and set(np.abs(z)) == {1.0}
    assert 30 * tri.alpha[0] == pytest.approx(z @ h @ z, rel=1e-10)
    t = np.diag(tri.alpha) + np.diag(tri.beta[:-1], 1) + np.diag(tri.beta[:-1], -1)
    theta, s = np.linalg.eigh(t)
    np.testing.assert_allclose(theta, lam, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(s[0] ** 2, (vecs.T @ z) ** 2 / 30, rtol=1e-6, atol=1e-12)


def test_analyse_shares_one_lanczos_run_between_ends_density_and_trace():
    """On Lanczos, the classification's run (Rademacher start, >= num_iter steps) is also the
    first SLQ probe and the Krylov space the trace takes exactly: the products add up to that,
    and the answers still match eigh and the exact trace."""
    with jax.enable_x64(True):
        loss, params = rotated_quadratic(n=60)
        h = np.asarray(jax.hessian(loss)(params))
        lam = np.linalg.eigvalsh(h)
        kw = dict(k=1, tol=1e-6, max_iter=40, num_iter=20, trace_samples=30, method="lanczos")
        one = hessian.analyse(loss, params, jax.random.PRNGKey(0), num_probes=1, **kw)
        two = hessian.analyse(loss, params, jax.random.PRNGKey(0), num_probes=2, **kw)
        c = hessian.classify(
            loss,
            params,
            k=1,
            key=jax.random.split(jax.random.PRNGKey(0), 3)[0],
            tol=1e-6,
            max_iter=40,
            method="lanczos",
            min_iter=20,
            start="rademacher",
        )
    assert one["shared_lanczos_run"] and c.num_hvps >= 20
    assert one["num_hvps"] == c.num_hvps + 30 and two["num_hvps"] == one["num_hvps"] + 20
    assert one["largest"][0] == pytest.approx(lam[-1], rel=1e-8)
    assert one["smallest"][-1] == pytest.approx(lam[0], rel=1e-6)
    tr = one["trace"]
    assert tr["samples"] == 30 and abs(tr["estimate"] - np.trace(h)) <= 4 * tr["std_error"]
    assert tr["krylov_dimension"] == c.num_hvps and "-step Krylov space" in one["explanation"]
    assert one["density"]["num_iter"] == 20 and 0 <= one["minimum_ratio"] <= 1


def test_forward_mode_is_what_lowering_allows():
    """Forward-over-reverse where the loss lowers in forward mode; reverse-over-reverse for
    LeNet's conv exactly where its kernels (a custom_vjp) are used: what conv says of itself."""
    from flax import nnx

    from jaxopt_notes import models
    from jaxopt_notes.hessian import _core as core
    from jaxopt_notes.models import conv

    net = models.LeNet(in_shape=(8, 8, 1), num_classes=10, variant="classic", rngs=nnx.Rngs(0))
    apply, params = models.functional(net)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    lenet = core.problem(lambda p: jnp.mean(apply(p, x) ** 2), params, None)[0]
    plain = core.problem(lambda p: jnp.sum(jnp.tanh(p) ** 2), jnp.ones(3), None)[0]
    kernels = not conv.forward_mode_safe() and conv.kernels_available()
    assert plain.forward and lenet.forward == (not kernels)
