"""The Hessian benchmark's pieces: the same LeNet in JAX (hand-written and models.LeNet) and in
torch, power iteration, the accuracy ladder, the table. No time is asserted."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxopt_notes.benchmarks import hessian as hb
from jaxopt_notes.benchmarks import hessian_losses as hl
from jaxopt_notes.benchmarks import hessian_peer as hp

from jaxopt_notes import hessian, models


def test_hand_written_lenet_is_models_lenet():
    x, y = hl.mnist_batch(4)
    apply, params = models.functional(models.LeNet(rngs=nnx.Rngs(0)))
    np.testing.assert_allclose(
        hl.classic_lenet_apply(hl.lenet_weights(0), x), apply(params, x), rtol=1e-5, atol=1e-6
    )


def test_torch_twin_has_the_same_loss():
    torch = pytest.importorskip("torch")
    x, y = hl.mnist_batch(8)
    weights = hl.lenet_weights(0)
    ours = float(hl.cross_entropy(hl.classic_lenet_apply(weights, x), y))
    net = hp.torch_lenet(weights)
    logits = net(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))
    labels = torch.from_numpy(np.asarray(y).astype(np.int64))
    theirs = float(torch.nn.functional.cross_entropy(logits, labels))
    assert theirs == pytest.approx(ours, rel=1e-5)


def test_pyhessian_peer_on_the_twin():
    pytest.importorskip("pyhessian", reason="PyHessian is the optional torch peer")
    x, y = hl.mnist_batch(4)
    peer = hp.Peer(hl.lenet_weights(0), x, y)
    trace = peer.trace(2)
    assert len(trace) == 2 and np.all(np.isfinite(trace))
    failure = peer.density(3)
    assert failure is None or "eig" in failure  # PyHessian 0.1 calls the removed torch.eig


def test_power_iteration_and_ladder_on_a_known_spectrum():
    d = jnp.concatenate([jnp.array([1.0, 0.5]), jnp.linspace(0.4, -0.2, 38)])

    def loss_fn(p):
        return 0.5 * jnp.sum(d * p["x"] ** 2)

    params = {"x": jnp.ones(40)}
    value, hvps = hb.power_iteration(loss_fn, params, jax.random.PRNGKey(0), tol=1e-7)
    assert value == pytest.approx(1.0, rel=1e-5) and 10 < hvps < 1000
    rows = hb.ladder(
        lambda t: hb.power_iteration(loss_fn, params, jax.random.PRNGKey(0), tol=t)[0],
        (1e-1, 1e-3, 1e-6),
        1.0,
    )
    assert rows[-1]["error"] <= hb.TARGET and all(r["error"] > hb.TARGET for r in rows[:-1])
    res = hessian.eigenvalues(loss_fn, params, k=1, method="lanczos", tol=1e-3)
    assert res.num_hvps < hvps  # Lanczos needs fewer products than power iteration here


def test_markdown_names_every_row():
    top = {
        "ours_s": 1.0,
        "ours_tol": 1e-2,
        "ours_hvps": 9,
        "pyhessian_s": 2.0,
        "pyhessian_tol": 1e-4,
        "ours_over_pyhessian": 0.5,
    }
    trace = {"ours_s_per_probe": 0.01, "pyhessian_s_per_probe": 0.02, "ours_over_pyhessian": 0.5}
    row = {
        "relative_standard_error": 0.05,
        "ours_s": 1.0,
        "ours_probes": 10,
        "pyhessian_s": 4.0,
        "plain_probes_needed": 80,
        "ours_over_pyhessian": 0.25,
    }
    trace["matched_standard_error"] = {"deflate": 20, "targets": [row, row]}
    dens = {"num_iter": 100, "ours_s": 3.0, "ours_over_hvps": 1.1, "pyhessian_error": "x"}
    lenet = {"top_eigenvalue": top, "trace": trace, "density": dens}
    mlp = {
        "lanczos_s": 0.1,
        "lanczos_hvps": 8,
        "power_s": 0.2,
        "power_hvps": 18,
        "lanczos_over_power": 0.5,
    }
    table = hb.markdown({"classic_lenet": lenet, "models_lenet": lenet, "mlp": mlp})
    assert table.count("\n") == 2 + 5 * 2 and "fails" in table and "| 0.50 |" in table
    assert "standard error of 5% | 1 s (20 Lanczos + 10 probes) | 4 s (80 probes) | 0.25 |" in table


def test_matched_trace_times_ours_to_each_standard_error_against_plain_probes():
    with jax.enable_x64(True):
        spectrum = np.r_[30.0, -12.0, np.linspace(-1.0, 1.0, 58)]  # rotated: Rademacher probes
        q = np.linalg.qr(np.asarray(jax.random.normal(jax.random.PRNGKey(0), (60, 60))))[0]
        a = jnp.asarray(q @ np.diag(spectrum) @ q.T)  # of a diagonal H would have no variance
        loss_fn = lambda p: 0.5 * p @ (a @ p)  # noqa: E731
        s = {**hb._settings(quick=True), "trace_pilot": 40, "trace_cap": 400}
        out = hb._matched_trace(loss_fn, jnp.zeros(60), jnp.ones(60), 1.0, s)
    sigma = out["plain_sigma_per_probe"]
    assert [r["relative_standard_error"] for r in out["targets"]] == list(hb.TRACE_RTOLS)
    for r in out["targets"]:
        target = r["relative_standard_error"] * abs(r["ours_estimate"])
        assert r["ours_std_error"] <= target  # each run stopped by reaching its target
        assert r["ours_hvps"] == r["ours_probes"] + out["deflate"]
        assert r["pyhessian_s"] == r["plain_probes_needed"]  # one second per plain probe
    scale = abs(out["targets"][-1]["ours_estimate"])
    needed = max(2, int(np.ceil((sigma / (0.05 * scale)) ** 2)))
    assert out["targets"][1]["plain_probes_needed"] == needed
    assert out["deflated_sigma_per_probe"] < sigma / 3  # the two outliers were taken exactly
