"""PyHessian 0.1 (torch, CPU) on a ``torch.nn`` twin of the classic LeNet, with the same
weights (checked in the tests: equal loss); the peer of ``bench hessian``."""

from __future__ import annotations

import jax
import numpy as np


def torch_lenet(weights: dict):
    """A ``torch.nn`` LeNet-5 (classic) holding ``weights`` (HWIO / NHWC-flatten converted)."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2),
        torch.nn.Sigmoid(),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(6, 16, 5),
        torch.nn.Sigmoid(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(400, 120),
        torch.nn.Sigmoid(),
        torch.nn.Linear(120, 84),
        torch.nn.Sigmoid(),
        torch.nn.Linear(84, 10),
    )
    w = jax.tree.map(np.asarray, weights)
    # our fc1 reads the (h, w, c) flatten, torch's the (c, h, w) one
    fc1 = w["fc1"]["kernel"].reshape(5, 5, 16, 120).transpose(2, 0, 1, 3).reshape(400, 120)
    pairs = [
        (net[0], w["conv1"]["kernel"].transpose(3, 2, 0, 1), w["conv1"]["bias"]),
        (net[3], w["conv2"]["kernel"].transpose(3, 2, 0, 1), w["conv2"]["bias"]),
        (net[7], fc1.T, w["fc1"]["bias"]),
        (net[9], w["fc2"]["kernel"].T, w["fc2"]["bias"]),
        (net[11], w["fc3"]["kernel"].T, w["fc3"]["bias"]),
    ]
    with torch.no_grad():
        for layer, kernel, bias in pairs:
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
    return net


def pyhessian_version() -> str | None:
    try:
        from importlib.metadata import version

        import pyhessian  # noqa: F401

        return version("pyhessian")
    except ImportError:
        return None


class Peer:
    """PyHessian on the torch twin: ``top(tol)``, ``trace(probes)``, ``density(iters)``."""

    def __init__(self, weights: dict, x: jax.Array, y: jax.Array):
        import torch

        self.torch = torch
        self.net = torch_lenet(weights)
        self.x = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
        self.y = torch.from_numpy(np.asarray(y).astype(np.int64))
        self.loss = float(torch.nn.functional.cross_entropy(self.net(self.x), self.y))

    def _hessian(self):
        from pyhessian import hessian as pyh

        self.net.zero_grad()
        return pyh(self.net, self.torch.nn.CrossEntropyLoss(), data=(self.x, self.y), cuda=False)

    def top(self, tol: float, seed: int = 0) -> float:
        self.torch.manual_seed(seed)
        return float(self._hessian().eigenvalues(maxIter=1000, tol=tol, top_n=1)[0][0])

    def trace(self, probes: int) -> list[float]:
        return self._hessian().trace(maxIter=probes, tol=-float("inf"))  # never stops early

    def density(self, iters: int) -> str | None:
        """None when it works, else its error (PyHessian 0.1 calls the removed ``torch.eig``)."""
        try:
            self._hessian().density(iter=iters, n_v=1)
        except Exception as error:  # noqa: BLE001  (any failure is the finding)
            return f"{type(error).__name__}: {error}"
        return None
