"""Building, checking and registering the C++ kernels that ``jax.ffi`` calls on XLA:CPU.

Two libraries: ``fused``, the one-pass optimizer steps of :mod:`jaxopt_notes.fused`, and
``conv``, the convolutions of :mod:`jaxopt_notes.models.conv`; each is one source in
``csrc/`` plus the header they share, ``kernel_threads.h``. Every caller falls back to XLA's
own code when a library is unavailable, and :func:`registered` says why.

- **When.** ``jaxopt-notes build-kernels`` builds both ahead of time; otherwise the first call
  that needs one builds it, with a one-line notice and its time on stderr. Not at install time:
  the kernels are optional, so the package installs as pure Python with no compiler, and each
  build is tuned to the CPU it runs on, which a wheel built elsewhere cannot be.
- **Flags.** A per-machine build, no runtime dispatch (:func:`arch_flags`): ``-march=native``
  on x86-64 (and ``-mprefer-vector-width=512`` for the convolutions), ``-mcpu=native`` on
  aarch64 and POWER, nothing CPU-specific elsewhere. The cache key hashes the sources, the
  compiler and flags, the CPU's features and JAX's version: another machine builds afresh.
- **Cache.** ``$JAXOPT_NOTES_CACHE``, default ``~/.cache/jaxopt_notes``, created mode 0700.
  Kernels load only from a directory owned by you and not writable by group or others (else
  a reason, and XLA's code); each build records its SHA-256, and a file that does not match
  its record (garbage, a foreign library) is rebuilt, never loaded.
- **Threads.** ``JAXOPT_NOTES_THREADS``: the optimizer kernels' helper threads (default: one
  per core but one; 0: none, the calling thread works alone). ``JAXOPT_NOTES_SPIN_US``: how
  long an idle helper spins before it sleeps, in microseconds (default 300; 0: it sleeps at
  once). Read once per process, at the first kernel call. The convolutions use XLA's pool.

>>> arch_flags("aarch64"), arch_flags("x86_64"), arch_flags("riscv64")
(('-mcpu=native',), ('-march=native',), ())
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, NamedTuple

import jax

from jaxopt_notes._native import _cache
from jaxopt_notes._native._cache import CACHE_ENV, cache_dir

__all__ = ["CACHE_ENV", "LIBRARIES", "Library", "cache_dir", "prepare", "registered"]

THREADS_ENV, SPIN_ENV = "JAXOPT_NOTES_THREADS", "JAXOPT_NOTES_SPIN_US"
_COMMON = ("-O3", "-std=c++17", "-fPIC", "-shared", "-pthread", "-fno-math-errno")
_X86 = ("x86_64", "amd64", "i386", "i686")


class Library(NamedTuple):
    """A kernel source, its compiler flags and its ``{ffi target: exported symbol}``;
    ``x86_flags`` are added on x86 CPUs only."""

    source: Path
    flags: tuple[str, ...]
    targets: dict[str, str]
    x86_flags: tuple[str, ...] = ()


_HERE = Path(__file__).parent / "csrc"
HEADERS = (_HERE / "kernel_threads.h",)  # included by every library
LIBRARIES = {
    # no FMA contraction: the optimizer kernels round each operation once, as NumPy does
    "fused": Library(
        _HERE / "fused_kernels.cc",
        ("-ffp-contract=off",),
        {
            "jn_fused_adam": "JnFusedAdam",
            "jn_fused_sgd": "JnFusedSgd",
            "jn_fused_scaled": "JnFusedScaled",
        },
    ),
    "conv": Library(
        _HERE / "conv_kernels.cc",
        (),
        {"jn_conv_forward": "JnConvForward", "jn_conv_kernel_grad": "JnConvKernelGrad"},
        x86_flags=("-mprefer-vector-width=512",),  # AVX-512 registers for the channel tiles
    ),
}


def arch_flags(machine: str) -> tuple[str, ...]:
    """The flags that tune a build for this CPU, by ``platform.machine()``'s name for it."""
    machine = machine.lower()
    if machine in _X86:
        return ("-march=native",)
    if machine in ("aarch64", "arm64") or machine.startswith(("armv8", "ppc64")):
        return ("-mcpu=native",)  # GCC's and Clang's spelling for these CPUs
    return ()


def compile_flags(library: Library, machine: str | None = None) -> tuple[str, ...]:
    """All flags for ``library`` on ``machine`` (default: this one)."""
    machine = platform.machine() if machine is None else machine
    x86 = library.x86_flags if machine.lower() in _X86 else ()
    return (*_COMMON, *arch_flags(machine), *library.flags, *x86)


def compiler() -> str | None:
    """The C++ compiler to use (``$CXX``, else ``g++`` or ``c++``), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_features() -> str:
    """The CPU's feature list, since ``-march=native`` builds for exactly these."""
    cpu = platform.processor() + platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            cpu += next((line for line in info if line.startswith(("flags", "Features"))), "")
    return cpu


def library_path(library: Library, cxx: str) -> Path:
    """Where ``library`` built by ``cxx`` for this machine lives in the cache."""
    parts = [library.source.read_bytes(), *(h.read_bytes() for h in HEADERS)]
    parts += [" ".join([cxx, *compile_flags(library)]).encode(), _cpu_features().encode()]
    parts += [jax.ffi.include_dir().encode(), jax.__version__.encode()]
    key = hashlib.sha256(b"".join(parts)).hexdigest()[:16]
    return cache_dir() / f"{library.source.stem}-{key}.so"


def build(library: Library, cxx: str, path: Path) -> str | None:
    """Compiles ``library`` into ``path`` and records its hash; returns why not, or None."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            out, include = Path(tmp) / path.name, jax.ffi.include_dir()
            command = [cxx, *compile_flags(library), "-I", include, str(library.source)]
            done = subprocess.run([*command, "-o", str(out)], capture_output=True, text=True)
            if done.returncode != 0:
                return f"compiling {library.source.name} failed: {done.stderr[-2000:]}"
            os.chmod(out, 0o700)  # whatever the umask: the loader refuses a shared-writable file
            record = _cache.record_path(out)
            _cache.write_record(out, record)
            os.replace(out, path)  # atomic: a concurrent build never sees half a file
            os.replace(record, _cache.record_path(path))
    except OSError as error:  # e.g. a read-only cache folder: set $JAXOPT_NOTES_CACHE
        return f"cannot build into {path.parent}: {error}"
    return None


class Built(NamedTuple):
    """What :func:`prepare` did: ``action`` is "cached", "built", "rebuilt" or "unavailable";
    ``path`` the verified library, or ``reason`` why there is none."""

    action: str
    path: Path | None = None
    reason: str | None = None


def prepare(
    library: Library, *, force: bool = False, lazy: bool = True, stream: IO[str] | None = None
) -> Built:
    """A verified build of ``library`` in the cache: the one there if it matches its record,
    else a fresh one (announced on ``stream``, default stderr, in one line with its time; a
    ``lazy`` build, inside a first call, also says how to build ahead of time)."""
    stream = sys.stderr if stream is None else stream
    for source in (library.source, *HEADERS):
        if not source.exists():
            return Built("unavailable", reason=f"the kernel source {source.name} is not installed")
    cxx = compiler()
    if cxx is None:
        return Built("unavailable", reason="no C++ compiler found (set $CXX)")
    if (reason := _cache.unsafe(cache_dir())) is not None:
        return Built("unavailable", reason=reason)
    path = library_path(library, cxx)
    why = _cache.mismatch(path)
    if why is None and not force:
        return Built("cached", path)
    fresh = why == "not built yet"
    what = "building" if fresh else f"rebuilding ({why or 'asked to'})"
    ahead = " (`jaxopt-notes build-kernels` does this ahead of time)" if lazy else ""
    notice = f"jaxopt_notes: {what} {library.source.name} into {path.parent}{ahead} ..."
    print(notice, end="", file=stream, flush=True)
    started = time.perf_counter()
    reason = build(library, cxx, path)
    print(" failed" if reason else f" done in {time.perf_counter() - started:.1f} s", file=stream)
    if reason is not None:
        return Built("unavailable", reason=reason)
    return Built("built" if fresh else "rebuilt", path)


def load(library: Library) -> str | None:
    """Prepares ``library``, loads it and registers its targets; returns why not, or None."""
    built = prepare(library)
    if built.path is None:
        return built.reason
    try:
        loaded = ctypes.CDLL(str(built.path))
    except OSError as error:
        return f"cannot load {built.path.name}: {error}"
    for target, symbol in library.targets.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(loaded, symbol)), "cpu")
    return None


def settings() -> dict[str, int | None]:
    """``{variable: value}`` of the helper threads' variables (None: unset, the default);
    raises ValueError for a value the kernels would not read as a whole number >= 0."""
    values = {}
    # beyond these a value is a typo: more helper threads than cores only wait on each other,
    # and a second of spinning per idle helper burns a core
    most = {THREADS_ENV: 4 * (os.cpu_count() or 1), SPIN_ENV: 1_000_000}
    for name in (THREADS_ENV, SPIN_ENV):
        text = os.environ.get(name, "")
        if text and not (text.isascii() and text.isdigit() and int(text) <= most[name]):
            raise ValueError(
                f"${name} must be a whole number from 0 to {most[name]} (0: off), got {text!r}"
            )
        values[name] = int(text) if text else None
    return values


@functools.cache
def registered(name: str) -> str | None:
    """Builds (once per machine), loads and registers library ``name`` (once per process);
    returns why not, or None. A reason is also said once on stderr: XLA's code runs instead."""
    settings()
    reason = load(LIBRARIES[name])
    if reason is not None:
        first = reason.splitlines()[0] if reason.strip() else reason
        print(f"jaxopt_notes: not using the {name} kernels: {first}", file=sys.stderr)
    return reason
