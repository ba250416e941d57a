"""The Hessian benchmark's pieces: the same LeNet in JAX (hand-written and models.LeNet) and in
torch, power iteration, the accuracy ladder, the table. No time is asserted."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxopt_notes import hessian, models
from jaxopt_notes.bench import hessian as hb
from jaxopt_notes.bench import hessian_losses as hl
from jaxopt_notes.bench import hessian_peer as hp


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
    assert table.count("\n") == 2 + 3 * 2 and "fails" in table and "| 0.50 |" in table
