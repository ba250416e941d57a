"""LeNet and MLP: parameter counts, shapes, initial stds, modes, and the pure-function view."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxopt_notes.models import MLP, LeNet, count_params, functional, pool_2x2, split


@pytest.mark.parametrize(
    "in_shape, total",
    [((28, 28, 1), 61_706), ((32, 32, 3), 83_126), ((8, 8, 1), 21_386)],
)
def test_lenet_parameter_counts_and_shapes(in_shape, total):
    model = LeNet(in_shape=in_shape, rngs=nnx.Rngs(0))
    assert count_params(model) == total
    # by hand: six 5x5 filters on C channels + 6 biases; sixteen 5x5x6 filters + 16 biases
    assert count_params(model.conv1) == 6 * 5 * 5 * in_shape[2] + 6
    assert count_params(model.conv2) == 16 * 5 * 5 * 6 + 16
    assert model(jnp.zeros((3, *in_shape))).shape == (3, 10)


def test_lenet_first_conv_on_three_channels_has_456_parameters():
    assert count_params(LeNet(in_shape=(32, 32, 3), rngs=nnx.Rngs(0)).conv1) == 456


def test_lenet_variants_differ_only_in_activation_and_pooling():
    x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
    classic = LeNet(variant="classic", rngs=nnx.Rngs(0))
    modern = LeNet(variant="modern", rngs=nnx.Rngs(0))
    assert count_params(classic) == count_params(modern)
    assert not np.allclose(classic(x), modern(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(variant="new"), "`variant` must be one of"),
        (dict(in_shape=(28, 28)), "`in_shape` must be"),
        (dict(in_shape=(3, 3, 1)), "at least 4x4"),
    ],
)
def test_lenet_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LeNet(**kwargs, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("depth, width", [(0, 8), (1, 8), (3, 5)])
def test_mlp_parameter_count(depth, width):
    sizes = [20] + [width] * depth + [10]
    expected = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    model = MLP(in_features=20, depth=depth, width=width, rngs=nnx.Rngs(0))
    assert count_params(model) == expected
    assert model(jnp.ones((4, 4, 5))).shape == (4, 10)  # inputs are flattened


@pytest.mark.parametrize(
    "init, init_std, expected",
    [
        ("normal", 1.0, 1.0),
        ("normal", 0.01, 0.01),
        ("xavier", 0.01, math.sqrt(2 / (400 + 300))),
        ("he", 0.01, math.sqrt(2 / 400)),
    ],
)
def test_mlp_initial_weight_std(init, init_std, expected):
    model = MLP(in_features=400, depth=1, width=300, init=init, init_std=init_std, rngs=nnx.Rngs(0))
    kernel = np.asarray(model.hidden[0].kernel[...])
    assert kernel.shape == (400, 300)
    assert abs(kernel.mean()) < 0.02 * expected
    assert kernel.std() == pytest.approx(expected, rel=0.02)


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`activation` must be one of"):
        MLP(activation="gelu", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`init` must be one of"):
        MLP(init="orthogonal", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`dropout` must be in \[0, 1\), got 1.0"):
        MLP(dropout=1.0, rngs=nnx.Rngs(0))


def test_inverted_dropout_in_training_and_off_in_eval():
    model = MLP(in_features=64, depth=1, width=2000, dropout=0.5, rngs=nnx.Rngs(0))
    plain = MLP(in_features=64, depth=1, width=2000, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 64))
    hidden = jax.nn.relu(plain.hidden[0](x))
    a = model(x, rngs=jax.random.key(1))
    b = model(x, rngs=jax.random.key(2))
    assert not np.allclose(a, b)
    assert np.array_equal(a, model(x, rngs=jax.random.key(1)))  # a key fixes the mask
    kept = jax.nn.relu(model.hidden[0](x)) * 2.0  # kept units are scaled by 1 / (1 - p)
    assert float(kept.sum()) == pytest.approx(float(hidden.sum()) * 2.0, rel=1e-6)
    model.eval()
    assert np.allclose(model(x), plain(x), atol=1e-6)
    assert np.array_equal(model(x), model(x))


def test_batch_norm_updates_statistics_in_training_only():
    model = MLP(in_features=3, depth=1, width=4, batch_norm=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (16, 3)) + 5.0
    model(x)
    mean = np.asarray(model.norms[0].mean[...])
    assert not np.allclose(mean, 0.0)
    model.eval()
    model(x)
    assert np.array_equal(mean, model.norms[0].mean[...])


def test_functional_view_is_pure_and_matches_eval_mode():
    model = MLP(in_features=6, depth=2, width=5, dropout=0.3, batch_norm=True, rngs=nnx.Rngs(0))
    apply, params = functional(model)
    x = jax.random.normal(jax.random.key(0), (4, 6))
    model.eval()
    assert np.allclose(apply(params, x), model(x), atol=1e-6)
    assert sum(p.size for p in jax.tree.leaves(params)) == count_params(model)
    # a pure function of params: differentiable and jit-able
    loss = jax.jit(lambda p: jnp.sum(apply(p, x) ** 2))
    grads = jax.grad(loss)(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    doubled = jax.tree.map(lambda p: 2 * p, params)
    assert not np.allclose(apply(doubled, x), apply(params, x))


def test_split_round_trip_gives_back_the_same_model():
    model = LeNet(variant="modern", rngs=nnx.Rngs(0))
    model.eval()
    pure = split(model)
    assert count_params(pure.merge()) == count_params(model) == 61706
    x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    assert np.array_equal(pure.merge()(x), model(x))
    doubled = jax.tree.map(lambda p: 2 * p, pure.params)
    assert not np.allclose(pure.merge(doubled)(x), model(x))


def test_split_views_set_the_modes_and_leave_the_model_alone():
    model = MLP(in_features=6, depth=1, width=64, dropout=0.5, batch_norm=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (8, 6)) + 3.0
    train, evaluate = split(model, train=True), split(model, train=False)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    assert not np.allclose(train.merge()(x, rngs=k1), train.merge()(x, rngs=k2))  # dropout on
    assert np.array_equal(evaluate.merge()(x, rngs=k1), evaluate.merge()(x, rngs=k2))
    assert model.dropout.deterministic is False and model.norms[0].use_running_average is False


def test_split_batch_norm_statistics_update_only_in_the_training_view():
    model = MLP(in_features=3, depth=1, width=4, batch_norm=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (16, 3)) + 5.0
    for train in (True, False):
        pure = split(model, train=train)
        assert jax.tree.leaves(pure.stats)  # the running mean and variance are split off
        net = pure.merge(copy=True)
        net(x)
        moved = not np.allclose(nnx.state(net, nnx.BatchStat)["norms"][0]["mean"][...], 0.0)
        assert moved is train
        assert np.allclose(pure.stats["norms"][0]["mean"][...], 0.0)  # copy=True: untouched
    # a traced step reads the new statistics out of the merged copy
    pure = split(model, train=True)

    @jax.jit
    def stats_after(params, stats):
        net = pure.merge(params, stats, copy=True)
        net(x)
        return nnx.state(net, nnx.BatchStat)

    new = stats_after(pure.params, pure.stats)
    assert jax.tree.structure(new) == jax.tree.structure(pure.stats)
    assert not np.allclose(new["norms"][0]["mean"][...], 0.0)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_2x2_matches_flax_pooling_values_and_gradients(kind):
    x = jax.random.normal(jax.random.key(2), (2, 7, 6, 3))  # odd height: last row dropped
    flax_pool = {"max": nnx.max_pool, "avg": nnx.avg_pool}[kind]

    def loss(pool, x):
        return jnp.sum(jnp.sin(pool(x)) * jnp.arange(1.0, 10.0).reshape(3, 3)[:, :, None])

    ours = jax.value_and_grad(lambda x: loss(lambda v: pool_2x2(v, kind), x))(x)
    ref = jax.value_and_grad(
        lambda x: loss(lambda v: flax_pool(v, window_shape=(2, 2), strides=(2, 2)), x)
    )(x)
    assert pool_2x2(x, kind).shape == (2, 3, 3, 3)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # tied maxima (values on a coarse grid): the gradient goes to the first, as in Flax
    tied = jnp.round(x)
    got, want = (
        jax.grad(lambda x, p=p: loss(p, x))(tied)
        for p in (
            lambda v: pool_2x2(v, kind),
            lambda v: flax_pool(v, window_shape=(2, 2), strides=(2, 2)),
        )
    )
    assert kind == "avg" or int(jnp.sum(got != 0)) == pool_2x2(tied, kind).size  # one per window
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_max_pool_has_a_jvp_so_forward_over_reverse_hvps_work():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    x = x.at[:, ::2, ::2].set(x[:, 1::2, 1::2])  # ties: the first maximum takes the gradient
    w = jax.random.normal(jax.random.key(1), (2, 3, 3, 3))
    f = lambda v: jnp.sum(jnp.tanh(pool_2x2(v, "max")) ** 2 * w)  # noqa: E731
    v = jax.random.normal(jax.random.key(2), x.shape)
    fwd = jax.jvp(jax.grad(f), (x,), (v,))[1]
    rev = jax.grad(lambda y: jnp.vdot(jax.grad(f)(y), v))(x)
    np.testing.assert_allclose(fwd, rev, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(fwd).sum()) > 0


@pytest.mark.parametrize(
    "init, std",
    [
        ("normal", 0.5),
        ("xavier", (2 / (400 + 120)) ** 0.5),
        ("he", (2 / 400) ** 0.5),
        ("lecun", (1 / 400) ** 0.5),
    ],
)
def test_lenet_init_schemes_give_their_std(init, std):
    net = LeNet(init=init, init_std=0.5, rngs=nnx.Rngs(0))
    kernel = np.asarray(net.fc1.kernel[...])  # 400 x 120
    assert kernel.std() == pytest.approx(std, rel=0.03)
    assert not np.asarray(net.fc1.bias[...]).any()
    with pytest.raises(ValueError, match="`init` must be one of"):
        LeNet(init="glorot", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("cls", [LeNet, MLP])
def test_the_signature_is_the_keyword_arguments_and_an_instance_shows_its_call(cls):
    """NNX's metaclass showed ``(*args, **kwargs)`` for every module class."""
    import inspect

    params = inspect.signature(cls).parameters
    assert list(params)[-1] == "rngs" and "num_classes" in params
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert params["num_classes"].default == 10
    net = cls(rngs=nnx.Rngs(0))
    assert list(inspect.signature(net).parameters) == ["x", "rngs"]


def test_the_models_init_only_exports():
    """The networks live in private modules; ``models/__init__`` defines nothing itself."""
    import ast
    from pathlib import Path

    from jaxopt_notes import models

    tree = ast.parse(Path(models.__file__).read_text())
    kinds = {type(node) for node in tree.body} - {ast.Expr, ast.ImportFrom, ast.Assign}
    assert kinds == set()
    assert all(getattr(models, name) is not None for name in models.__all__)
    assert MLP.__module__ == "jaxopt_notes.models._nets"
