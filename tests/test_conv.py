"""The convolution kernels (``jaxopt_notes.models.conv``) against XLA's convolution.

In float64, so that the kernels' other summation order leaves no float32 rounding to compare:
values, first and second derivatives agree with ``lax.conv_general_dilated`` to 1e-10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxopt_notes import models
from jaxopt_notes.models import conv

NHWC = ("NHWC", "HWIO", "NHWC")
needs_kernels = pytest.mark.skipif(not conv.kernels_available(), reason="no C++ compiler")


def _lax(x, w, padding):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NHWC)


def _ours(x, w, padding):
    return conv.conv_nhwc(x, w, (1, 1), padding, dimension_numbers=NHWC)


def _arrays(x_shape, w_shape, dtype=jnp.float64):
    # NumPy draws: jax.random would compile a sampler for every shape (seconds per test)
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    return tuple(jnp.asarray(rng.normal(size=s), dtype) for s in (x_shape, w_shape))


def _close(got, want, tol=1e-10):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# channel counts in and out: one vector block with a tail (6), exactly one (16), two (20);
# widths that leave a remainder after the kernels' pixel tiles; 2 channels on a row of 4
# pixels, where one vector store covers the whole row (its lanes spill onto later pixels)
SHAPES = [
    ((3, 9, 8, 1), (5, 5, 1, 6)),
    ((2, 14, 14, 6), (5, 5, 6, 16)),
    ((2, 7, 11, 3), (3, 3, 3, 20)),
    ((1, 6, 9, 16), (2, 4, 16, 3)),
    ((3, 5, 6, 1), (3, 3, 1, 2)),
]


@pytest.mark.parametrize("x_shape, w_shape", SHAPES)
@pytest.mark.parametrize("padding", [((0, 0), (0, 0)), ((2, 2), (2, 2)), ((1, 2), (0, 3))])
def test_values_and_gradients_match_lax(x_shape, w_shape, padding):
    with jax.enable_x64(True):
        x, w = _arrays(x_shape, w_shape)

        def loss(conv_fn, x, w):
            return jnp.sum(jnp.sin(conv_fn(x, w, padding)))

        def both(conv_fn):
            return jax.jit(jax.value_and_grad(lambda x, w: loss(conv_fn, x, w), (0, 1)))(x, w)

        _close(both(_ours), both(_lax))


@pytest.mark.parametrize("x_shape, w_shape", SHAPES[:3])
def test_second_derivatives_match_lax(x_shape, w_shape):
    """Hessian-vector products, reverse over reverse, through both kernels' own gradients."""
    with jax.enable_x64(True):
        x, w = _arrays(x_shape, w_shape)
        u, v = _arrays(x_shape, w_shape)
        padding = ((1, 1), (2, 0))

        def hvp(conv_fn):
            def loss(x, w):
                return jnp.sum(jnp.tanh(conv_fn(x, w, padding)) ** 2)

            def along(x, w):
                gx, gw = jax.grad(loss, (0, 1))(x, w)
                return jnp.vdot(gx, u) + jnp.vdot(gw, v)

            return jax.jit(jax.grad(along, (0, 1)))(x, w)

        _close(hvp(_ours), hvp(_lax), tol=1e-9)


def test_under_vmap_and_jit():
    with jax.enable_x64(True):
        x, w = _arrays((4, 2, 8, 8, 3), (5, 5, 3, 6))
        pad = ((2, 2), (2, 2))
        got = jax.jit(jax.vmap(lambda x: _ours(x, w, pad)))(x)
        _close(got, jnp.stack([_lax(xi, w, pad) for xi in x]))


def _custom_calls(fn, *args):
    text = jax.jit(fn).lower(*args).compile().as_text()
    return text.count("custom-call("), text.count("convolution(")


@needs_kernels
def test_a_lenet_gradient_runs_on_the_kernels():
    """Two forward correlations, the second layer's input gradient, two kernel gradients."""
    apply, params = models.functional(models.LeNet(rngs=nnx.Rngs(0)))
    x = jnp.ones((4, 28, 28, 1))
    calls, convolutions = _custom_calls(jax.grad(lambda p: jnp.sum(apply(p, x))), params)
    assert (calls, convolutions) == (5, 0)


def test_other_dtypes_and_no_kernels_use_xla(monkeypatch):
    x, w = _arrays((2, 8, 8, 6), (3, 3, 6, 4), jnp.bfloat16)
    pad = ((1, 1), (1, 1))
    assert _custom_calls(lambda x, w: _ours(x, w, pad), x, w)[0] == 0
    want = _lax(x.astype(jnp.float32), w.astype(jnp.float32), pad)
    got = jax.jit(lambda x, w: _ours(x, w, pad))(x, w).astype(jnp.float32)
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.2)
    with jax.enable_x64(True):  # without kernels: XLA's convolutions, values and gradients
        monkeypatch.setattr(conv, "_use_kernels", lambda *arrays: False)
        x, w = _arrays((2, 7, 9, 5), (3, 2, 5, 4))  # a shape no other test traced with kernels

        def grads(conv_fn):
            loss = lambda x, w: jnp.sum(jnp.sin(conv_fn(x, w, pad)))  # noqa: E731
            return jax.jit(jax.value_and_grad(loss, (0, 1)))(x, w)

        assert _custom_calls(lambda x, w: _ours(x, w, pad), x, w)[0] == 0
        _close(grads(_ours), grads(_lax))


def test_off_the_cpu_nothing_is_built_and_lax_convolves_forward_too(monkeypatch):
    def no_build(name):
        raise AssertionError(f"built the CPU kernels ({name}) for another backend")

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(conv._native, "registered", no_build)
    assert conv.forward_mode_safe()
    x, w = _arrays((1, 6, 7, 2), (2, 3, 2, 3), jnp.float32)  # a shape no other test traces
    dx, dw = _arrays((1, 6, 7, 2), (2, 3, 2, 3), jnp.float32)
    pad = ((0, 0), (1, 1))
    assert _custom_calls(lambda x, w: _ours(x, w, pad), x, w)[0] == 0
    assert "custom_vjp" not in str(jax.make_jaxpr(lambda x, w: _ours(x, w, pad))(x, w))
    # forward mode: the tangent of a bilinear map, against lax's own jvp
    got = jax.jit(lambda *a: jax.jvp(lambda x, w: _ours(x, w, pad), a[:2], a[2:]))(x, w, dx, dw)
    want = jax.jvp(lambda x, w: _lax(x, w, pad), (x, w), (dx, dw))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_on_the_cpu_forward_mode_is_refused_as_documented():
    """On the CPU the convolution is a custom_vjp: jvp fails, as forward_mode_safe() says."""
    assert jax.default_backend() == "cpu" and not conv.forward_mode_safe()
    x, w = _arrays((1, 5, 5, 1), (2, 2, 1, 2), jnp.float32)
    pad = ((0, 0), (0, 0))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: _ours(x, w, pad), (x,), (x,))


def test_strides_and_string_padding_go_to_lax():
    x, w = _arrays((2, 9, 9, 3), (3, 3, 3, 4), jnp.float32)
    for args in [((2, 2), ((1, 1), (1, 1))), ((1, 1), "SAME"), ((1, 1), ((-1, 0), (0, 0)))]:
        got = conv.conv_nhwc(x, w, *args, dimension_numbers=NHWC)
        want = jax.lax.conv_general_dilated(x, w, *args, dimension_numbers=NHWC)
        np.testing.assert_array_equal(got, want)


def test_an_empty_batch_has_zero_kernel_gradients():
    x, w = _arrays((0, 8, 8, 3), (3, 3, 3, 5), jnp.float32)
    pad = ((1, 1), (1, 1))
    out, dw = jax.jit(jax.value_and_grad(lambda w: jnp.sum(_ours(x, w, pad))))(w)
    assert float(out) == 0.0 and dw.shape == w.shape
    np.testing.assert_array_equal(dw, np.zeros(w.shape, np.float32))


def test_a_missing_kernel_source_is_a_reason_to_fall_back(monkeypatch, tmp_path):
    from jaxopt_notes import _native

    monkeypatch.setitem(_native.LIBRARIES, "gone", _native.Library(tmp_path / "gone.cc", (), {}))
    assert _native.registered("gone") == "the kernel source gone.cc is not installed"
