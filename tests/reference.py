"""Independent NumPy references, written from the papers' formulas, and a shared test problem.

Each reference is ``make(**hyper) -> step(theta, g, t) -> theta`` on one flat float64 vector,
``t`` counting from 1. They share no code with the package.
"""

from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------- the test problem: a tiny MLP
def mlp_problem(seed: int = 0, n: int = 32, d: int = 4, h: int = 8):
    """A 2-layer tanh MLP with a mean-squared-error loss; returns (theta0, grad_fn, unravel).

    ``grad_fn(theta) -> g`` is written out by hand (backprop), so every framework under test
    is handed exactly the same gradient for the same parameters.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.sin(x @ rng.normal(size=(d, 1)))
    shapes = {"w1": (d, h), "b1": (h,), "w2": (h, 1), "b2": (1,)}
    sizes = [int(np.prod(s)) for s in shapes.values()]
    theta0 = rng.normal(size=sum(sizes)) * 0.5

    def unravel(theta):
        parts = np.split(theta, np.cumsum(sizes)[:-1])
        return {k: p.reshape(s) for (k, s), p in zip(shapes.items(), parts, strict=True)}

    def grad_fn(theta):
        p = unravel(np.asarray(theta, np.float64))
        a = np.tanh(x @ p["w1"] + p["b1"])
        r = a @ p["w2"] + p["b2"] - y  # residual; loss = mean(r^2) / 2
        dout = r / n
        da = (dout @ p["w2"].T) * (1 - a**2)
        g = {"w1": x.T @ da, "b1": da.sum(0), "w2": a.T @ dout, "b2": dout.sum(0)}
        return np.concatenate([g[k].ravel() for k in shapes])

    return theta0, grad_fn, unravel


def run(step, theta0, grad_fn, steps: int):
    theta = np.array(theta0, np.float64)
    for t in range(1, steps + 1):
        theta = step(theta, grad_fn(theta), t)
    return theta


# ----------------------------------------------------------------------- the references
def sgd(lr, momentum=0.0, nesterov=False):
    """Polyak heavy ball; Nesterov in the form of Sutskever et al. (2013), eq. (3)-(4)."""
    v = None

    def step(theta, g, t):
        nonlocal v
        v = g.copy() if v is None else momentum * v + g
        d = g + momentum * v if nesterov else (v if momentum else g)
        return theta - lr * d

    return step


def adagrad(lr, eps, g0, eps_in_sqrt):
    """Duchi, Hazan & Singer (2011): G_t = G_0 + sum g^2; step g / sqrt(G_t)."""
    acc = None

    def step(theta, g, t):
        nonlocal acc
        acc = (np.full_like(g, g0) if acc is None else acc) + g * g
        den = np.sqrt(acc + eps) if eps_in_sqrt else np.sqrt(acc) + eps
        return theta - lr * g / den

    return step


def rmsprop(lr, rho, eps, eps_in_sqrt, momentum=0.0):
    """Hinton (2012) lecture 6e: v = rho v + (1 - rho) g^2; step g / sqrt(v)."""
    v = None
    buf = None

    def step(theta, g, t):
        nonlocal v, buf
        v = (1 - rho) * g * g + (rho * v if v is not None else 0.0)
        d = g / (np.sqrt(v + eps) if eps_in_sqrt else np.sqrt(v) + eps)
        if momentum:
            buf = d if buf is None else momentum * buf + d
            d = buf
        return theta - lr * d

    return step


def adam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=None):
    """Kingma & Ba (2015), Algorithm 1; AdamW (Loshchilov & Hutter 2019), Algorithm 2 with
    the schedule multiplier equal to lr; AMSGrad (Reddi et al. 2018), Algorithm 2, with the max
    taken over the bias-corrected ("corrected") or raw ("raw") second moment."""
    m = v = vmax = None

    def step(theta, g, t):
        nonlocal m, v, vmax
        m = (1 - b1) * g + (b1 * m if m is not None else 0.0)
        v = (1 - b2) * g * g + (b2 * v if v is not None else 0.0)
        m_hat = m / (1 - b1**t)
        if amsgrad == "corrected":
            vmax = v / (1 - b2**t) if vmax is None else np.maximum(vmax, v / (1 - b2**t))
            v_hat = vmax
        elif amsgrad == "raw":
            vmax = v if vmax is None else np.maximum(vmax, v)
            v_hat = vmax / (1 - b2**t)
        else:
            v_hat = v / (1 - b2**t)
        return theta - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * theta)

    return step


def nadam(lr, b1=0.9, b2=0.999, eps=1e-8, psi=None):
    """Dozat (2016), Algorithm 2 with the momentum schedule mu_t = b1 (1 - 0.5 * 0.96^(t psi))
    (psi=None: constant mu_t = b1), without the extra b2 factor on v_hat."""
    m = v = None
    prod = 1.0

    def mu(t):
        return b1 if psi is None else b1 * (1 - 0.5 * 0.96 ** (t * psi))

    def step(theta, g, t):
        nonlocal m, v, prod
        m = (1 - b1) * g + (b1 * m if m is not None else 0.0)
        v = (1 - b2) * g * g + (b2 * v if v is not None else 0.0)
        prod_t = prod * mu(t)
        prod_next = prod_t * mu(t + 1)
        m_bar = mu(t + 1) * m / (1 - prod_next) + (1 - mu(t)) * g / (1 - prod_t)
        prod = prod_t
        return theta - lr * m_bar / (np.sqrt(v / (1 - b2**t)) + eps)

    return step


def adamax(lr, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba (2015), Algorithm 2 (eps inside the max, as both frameworks do)."""
    m = u = None

    def step(theta, g, t):
        nonlocal m, u
        m = (1 - b1) * g + (b1 * m if m is not None else 0.0)
        u = np.maximum(b2 * u if u is not None else 0.0, np.abs(g) + eps)
        return theta - lr / (1 - b1**t) * m / u

    return step
