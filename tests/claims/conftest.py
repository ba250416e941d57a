"""The claims tests that train convolutions run on both convolution paths.

A verdict must not depend on which kernels ran (the native C++ ones or XLA's): float rounding
differs between them, so a tiny setting has to sit clearly past its threshold on both.
"""

from __future__ import annotations

import pytest

from jaxopt_notes.models import conv


@pytest.fixture(params=["native", "xla"])
def conv_path(request, monkeypatch):
    """Runs the test once with the native kernels (where they build) and once with XLA's."""
    if request.param == "xla":
        monkeypatch.setattr(conv, "_use_kernels", lambda *arrays: False)
    elif not conv.kernels_available():
        pytest.skip("the native convolution kernels do not build here; XLA's run instead")
    return request.param
