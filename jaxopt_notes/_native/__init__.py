"""Building and registering the C++ kernels that ``jax.ffi`` calls on XLA:CPU.

A kernel library is one source file next to this module, plus the header of helper threads
they share (``kernel_threads.h``). It is compiled on first use with the system's C++ compiler
(``$CXX``, else ``g++`` or ``c++``) into ``$JAXOPT_NOTES_CACHE`` (default
``~/.cache/jaxopt_notes``), under a name that hashes the source and header, the flags, the
CPU's features (``-march=native``) and the JAX version, so a changed source or machine builds
afresh. :func:`registered` builds and registers a library once per process and returns why it
could not, or None; callers fall back to XLA's own code when it returns a reason.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import jax

_COMMON = ["-O3", "-march=native", "-std=c++17", "-fPIC", "-shared", "-pthread", "-fno-math-errno"]


class Library(NamedTuple):
    """A kernel source, its compiler flags and its ``{ffi target: exported symbol}``."""

    source: Path
    flags: tuple[str, ...]
    targets: dict[str, str]


_HERE = Path(__file__).parent / "csrc"
HEADERS = (_HERE / "kernel_threads.h",)  # included by every library
LIBRARIES = {
    # no FMA contraction: the optimizer kernels round each operation once, as NumPy does
    "fused": Library(
        _HERE / "fused_kernels.cc",
        (*_COMMON, "-ffp-contract=off"),
        {
            "jn_fused_adam": "JnFusedAdam",
            "jn_fused_sgd": "JnFusedSgd",
            "jn_fused_scaled": "JnFusedScaled",
        },
    ),  # fmt: skip
    "conv": Library(
        _HERE / "conv_kernels.cc",
        (*_COMMON, "-mprefer-vector-width=512"),
        {"jn_conv_forward": "JnConvForward", "jn_conv_kernel_grad": "JnConvKernelGrad"},
    ),
}


def compiler() -> str | None:
    """The C++ compiler to use, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def library_path(library: Library, cxx: str) -> Path:
    """Where ``library`` built by ``cxx`` for this machine lives in the cache."""
    cpu = platform.processor() + platform.machine()
    if os.path.exists("/proc/cpuinfo"):  # -march=native: the key must change with the CPU
        with open("/proc/cpuinfo") as info:
            cpu += next((line for line in info if line.startswith("flags")), "")
    key = hashlib.sha256(
        b"".join([library.source.read_bytes(), *(h.read_bytes() for h in HEADERS),
                  " ".join([cxx, *library.flags]).encode(),
                  cpu.encode(), jax.ffi.include_dir().encode(), jax.__version__.encode()])
    ).hexdigest()[:16]  # fmt: skip
    cache = Path(os.environ.get("JAXOPT_NOTES_CACHE", Path.home() / ".cache" / "jaxopt_notes"))
    return cache / f"{library.source.stem.strip('_')}-{key}.so"


def build(library: Library, cxx: str, path: Path) -> str | None:
    """Compiles ``library`` into ``path``; returns why that failed, or None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            out = Path(tmp) / path.name
            command = [cxx, *library.flags, "-I", jax.ffi.include_dir(), str(library.source),
                       "-o", str(out)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                return f"compiling {library.source.name} failed: {done.stderr[-2000:]}"
            os.replace(out, path)  # atomic: a concurrent build never sees half a file
    except OSError as error:  # e.g. a read-only cache folder: set $JAXOPT_NOTES_CACHE
        return f"cannot build into {path.parent}: {error}"
    return None


@functools.cache
def registered(name: str) -> str | None:
    """Builds (once per machine) and registers library ``name``; returns why not, or None."""
    library = LIBRARIES[name]
    for source in (library.source, *HEADERS):
        if not source.exists():
            return f"the kernel source {source.name} is not installed"
    cxx = compiler()
    if cxx is None:
        return "no C++ compiler found (set $CXX)"
    path = library_path(library, cxx)
    if not path.exists() and (reason := build(library, cxx, path)) is not None:
        return reason
    loaded = ctypes.cdll.LoadLibrary(str(path))
    for target, symbol in library.targets.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(loaded, symbol)), "cpu")
    return None
