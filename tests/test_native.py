"""The kernel cache (``jaxopt_notes._native``): what is built, rebuilt, refused or falls back.

Most cases build a one-function library (well under a second) instead of the real kernels;
the thread knobs are checked on the real optimizer kernels, in subprocesses.
"""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxopt_notes import _native, cli
from jaxopt_notes._native import _cache

needs_compiler = pytest.mark.skipif(_native.compiler() is None, reason="no C++ compiler")
ROOT = os.geteuid() == 0  # modes do not stop root's writes


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv(_native.CACHE_ENV, str(directory))
    return directory


@pytest.fixture
def tiny(tmp_path):
    source = tmp_path / "tiny_kernels.cc"
    source.write_text('extern "C" int jn_tiny() { return 7; }\n')
    return _native.Library(source, (), {})


def _foreign(tmp_path: Path, marker: Path) -> Path:
    """A valid shared library whose constructor creates ``marker`` when it is loaded."""
    source = tmp_path / "foreign.cc"
    source.write_text(
        "#include <cstdio>\n"
        "__attribute__((constructor)) static void ran() {\n"
        f'  std::fclose(std::fopen("{marker}", "w"));\n'
        "}\n"
    )
    out = tmp_path / "foreign.so"
    subprocess.run(
        [_native.compiler(), "-shared", "-fPIC", str(source), "-o", str(out)], check=True
    )
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", ["aarch64", "arm64", "ppc64le", "riscv64", "s390x"])
def test_no_x86_flag_outside_x86(machine):
    for library in _native.LIBRARIES.values():
        flags = _native.compile_flags(library, machine)
        assert not any(f.startswith(("-march", "-mprefer-vector-width", "-mavx")) for f in flags)
        assert ("-mcpu=native" in flags) == (machine in ("aarch64", "arm64", "ppc64le"))
        assert "-O3" in flags and "-shared" in flags


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="no aarch64 compiler")
@pytest.mark.parametrize("name", sorted(_native.LIBRARIES))
def test_the_sources_build_for_aarch64_with_its_flags(name, tmp_path):
    """A cross compiler has no ``native`` CPU to detect, so a named one stands in for it."""
    import jax

    library = _native.LIBRARIES[name]
    flags = [
        "-mcpu=neoverse-n1" if f == "-mcpu=native" else f
        for f in _native.compile_flags(library, "aarch64")
    ]
    out = tmp_path / f"{name}.so"
    command = ["aarch64-linux-gnu-g++", *flags, "-I", jax.ffi.include_dir(), str(library.source)]
    subprocess.run([*command, "-o", str(out)], check=True, capture_output=True)
    assert out.read_bytes()[18] == 183  # ELF e_machine: EM_AARCH64


def test_x86_builds_for_this_cpu_and_wide_vectors_for_the_convolutions():
    conv = _native.compile_flags(_native.LIBRARIES["conv"], "x86_64")
    fused = _native.compile_flags(_native.LIBRARIES["fused"], "x86_64")
    assert "-march=native" in conv and "-mprefer-vector-width=512" in conv
    assert "-march=native" in fused and "-mprefer-vector-width=512" not in fused
    assert "-ffp-contract=off" in fused


# --- the cache --------------------------------------------------------------------------------


@needs_compiler
def test_a_build_is_announced_recorded_then_reused(cache, tiny, capsys):
    built = _native.prepare(tiny)
    assert built.action == "built" and built.path.parent == cache
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "building tiny_kernels.cc" in notice and " s\n" in notice
    assert "`jaxopt-notes build-kernels` does this ahead of time" in notice
    assert _cache.record_path(built.path).read_text().strip() == _sha(built.path)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert _native.prepare(tiny) == ("cached", built.path, None)
    assert capsys.readouterr().err == ""  # a cached build says nothing
    assert _native.load(tiny) is None


@needs_compiler
@pytest.mark.parametrize("recorded", [False, True])
def test_a_garbage_file_is_rebuilt(cache, tiny, recorded, capsys):
    path = _native.prepare(tiny).path
    if not recorded:
        _cache.record_path(path).unlink()
    path.write_bytes(b"garbage")  # e.g. a crash's leftover: loading it raised OSError
    capsys.readouterr()
    built = _native.prepare(tiny)
    assert built.action == "rebuilt" and _cache.mismatch(path) is None
    assert "rebuilding" in capsys.readouterr().err
    assert _native.load(tiny) is None


@needs_compiler
@pytest.mark.parametrize("recorded", [False, True])
def test_a_foreign_library_is_rebuilt_never_loaded(cache, tiny, tmp_path, recorded):
    marker = tmp_path / "foreign-code-ran"
    path = _native.prepare(tiny).path
    if not recorded:
        _cache.record_path(path).unlink()
    path.write_bytes(_foreign(tmp_path, marker).read_bytes())
    assert _native.load(tiny) is None
    assert not marker.exists()
    assert (
        _sha(path) == _cache.record_path(path).read_text().strip() != _sha(tmp_path / "foreign.so")
    )


@needs_compiler
@pytest.mark.parametrize(
    "mode, who", [(0o770, "group"), (0o703, "others"), (0o777, "group and others")]
)
def test_a_shared_writable_cache_is_refused_with_the_reason(cache, tiny, tmp_path, mode, who):
    """Even a library with a record that matches it: whoever can write the folder wrote both."""
    marker = tmp_path / "foreign-code-ran"
    path = _native.prepare(tiny).path
    path.write_bytes(_foreign(tmp_path, marker).read_bytes())
    _cache.record_path(path).write_text(_sha(path))
    cache.chmod(mode)
    reason = _native.load(tiny)
    assert reason.startswith(f"refusing to load kernels from {cache}: it is writable by {who} ")
    assert f"chmod go-w {cache}" in reason and not marker.exists()


def test_a_cache_owned_by_another_user_is_refused(cache, tiny):
    cache.mkdir(mode=0o700)
    if ROOT:
        os.chown(cache, 65534, 65534)
    else:
        pytest.skip("only root can give a folder away")
    reason = _native.prepare(tiny).reason
    assert reason.startswith(f"refusing to load kernels from {cache}: it is owned by uid 65534")


@needs_compiler
def test_a_read_only_cache_loads_a_verified_build_and_cannot_build_a_new_one(
    cache, tiny, tmp_path, monkeypatch
):
    assert _native.prepare(tiny).action == "built"
    cache.chmod(0o500)
    assert _native.prepare(tiny).action == "cached" and _native.load(tiny) is None
    other = _native.Library(tmp_path / "other_kernels.cc", (), {})
    other.source.write_text('extern "C" int jn_other() { return 8; }\n')
    if ROOT:  # a read-only folder, as root sees none: its writes fail as they would

        def read_only(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(cache))

        monkeypatch.setattr(_native.tempfile, "TemporaryDirectory", read_only)
    reason = _native.load(other)
    assert reason.startswith(f"cannot build into {cache}: ") and "Permission denied" in reason


def test_no_compiler_is_a_reason_to_fall_back(cache, tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ or c++ on it
    assert _native.compiler() is None
    assert _native.load(tiny) == "no C++ compiler found (set $CXX)"


_FALLBACK = textwrap.dedent("""
    import jax.numpy as jnp
    from jaxopt_notes import fused
    from jaxopt_notes.models import conv
    x, w = jnp.ones((1, 6, 6, 1)), jnp.ones((3, 3, 1, 2))
    y = conv.conv_nhwc(x, w, (1, 1), ((0, 0), (0, 0)), dimension_numbers=conv.NHWC)
    print(conv.kernels_available(), fused.available(), float(y.sum()))
""")


def test_without_a_compiler_the_kernels_fall_back_to_xla_and_say_why(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env.update(PATH=str(tmp_path), **{_native.CACHE_ENV: str(tmp_path / "cache")})
    done = subprocess.run(
        [sys.executable, "-c", _FALLBACK], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "False", str(4 * 4 * 2 * 9.0)]
    for name in ("conv", "fused"):
        assert f"not using the {name} kernels: no C++ compiler found (set $CXX)" in done.stderr


def test_a_symbolic_link_is_not_a_build(cache, tmp_path):
    cache.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.so"
    target.write_bytes(b"\x7fELF")
    (cache / "x.so").symlink_to(target)
    _cache.record_path(cache / "x.so").write_text(_sha(target))
    assert _cache.mismatch(cache / "x.so") == "x.so is not a plain file of yours"


# --- the thread knobs -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "two", "1.5", " 3", "99999999999999999999"])
def test_a_bad_thread_setting_is_an_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(_native.THREADS_ENV, value)
    with pytest.raises(ValueError, match=r"^\$JAXOPT_NOTES_THREADS must be a whole number from 0"):
        _native.settings()


def test_thread_count_is_bounded_by_the_cores(monkeypatch):
    monkeypatch.setattr(_native.os, "cpu_count", lambda: 2)
    monkeypatch.setenv(_native.THREADS_ENV, "8")
    assert _native.settings()[_native.THREADS_ENV] == 8
    monkeypatch.setenv(_native.THREADS_ENV, "9")
    with pytest.raises(ValueError, match="from 0 to 8"):
        _native.settings()


def test_thread_settings_default_to_unset(monkeypatch):
    monkeypatch.delenv(_native.THREADS_ENV, raising=False)
    monkeypatch.setenv(_native.SPIN_ENV, "0")
    assert _native.settings() == {_native.THREADS_ENV: None, _native.SPIN_ENV: 0}


_THREADS = textwrap.dedent("""
    import os, jax.numpy as jnp
    from jaxopt_notes import fused
    opt = fused.adam(1e-3)
    params = [jnp.ones(1 << 17)]
    state = opt.init(params)
    for _ in range(3):
        params, state = opt.step(params, state, [jnp.ones(1 << 17)])
    before = len(os.listdir("/proc/self/task"))
    print(fused.available(), before, float(params[0][0]))
""")


@needs_compiler
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_the_helper_thread_count_is_the_variable():
    """Threads of a process after fused steps big enough to share: each helper is one more."""

    def run(threads):
        env = {**os.environ, _native.THREADS_ENV: str(threads), _native.SPIN_ENV: "0"}
        command = [sys.executable, "-c", _THREADS]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        available, count, value = done.stdout.split()
        assert available == "True"
        return int(count), value

    (none, v0), (three, v3) = run(0), run(3)
    assert three - none == 3 and v0 == v3


# --- the command ------------------------------------------------------------------------------


@needs_compiler
def test_build_kernels_builds_then_keeps_and_says_where(cache, tiny, monkeypatch, capsys):
    monkeypatch.setattr(_native, "LIBRARIES", {"tiny": tiny})
    assert cli.main(["build-kernels"]) == 0
    out = capsys.readouterr()
    assert f"kernel cache: {cache}" in out.out and "tiny: built, tiny_kernels-" in out.out
    assert "building tiny_kernels.cc" in out.err and "ahead of time" not in out.err
    assert cli.main(["build-kernels", "--only", "tiny"]) == 0
    assert "tiny: cached" in capsys.readouterr().out
    cache.chmod(0o775)
    assert cli.main(["build-kernels"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "jaxopt-notes build-kernels: error: the tiny kernels: refusing to load"
    )


def test_build_kernels_bad_input_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setenv(_native.SPIN_ENV, "soon")
    assert cli.main(["build-kernels"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "jaxopt-notes build-kernels: error: "
        "$JAXOPT_NOTES_SPIN_US must be a whole number from 0 to 1000000 (0: off), got 'soon'"
    ]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["build-kernels", "--only", "nope"])
    assert exit_.value.code == 2
