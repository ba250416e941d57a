"""The kernel cache: a directory only its owner can write, and a hash recorded per build.

A shared library is code that runs when it is loaded, so nothing is loaded from a directory
someone else could write, and nothing is loaded that differs from what we built: each build
writes the SHA-256 of the library beside it (``NAME.so.sha256``), and a file whose bytes do
not match its record (a crash's leftover, a foreign library) is built again, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

CACHE_ENV = "JAXOPT_NOTES_CACHE"


def cache_dir() -> Path:
    """``$JAXOPT_NOTES_CACHE``, else ``~/.cache/jaxopt_notes``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxopt_notes")


def unsafe(directory: Path) -> str | None:
    """Creates ``directory`` (mode 0700) if missing; returns why kernels must not be loaded
    from it (not a directory, owned by another user, writable by group or others), or None."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as error:
        return f"cannot use the kernel cache {directory}: {error.strerror or error}"
    fix = f"set ${CACHE_ENV} to a directory of your own"
    if not stat.S_ISDIR(info.st_mode):
        return f"the kernel cache {directory} is not a directory; {fix}"
    if info.st_uid != os.geteuid():
        return (
            f"refusing to load kernels from {directory}: it is owned by uid {info.st_uid}, "
            f"not by you (uid {os.geteuid()}); {fix}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        bits = ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others"))
        who = " and ".join(name for bit, name in bits if info.st_mode & bit)
        return (
            f"refusing to load kernels from {directory}: it is writable by {who} "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod go-w {directory}` or {fix}"
        )
    return None


def record_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_record(library: Path, record: Path) -> None:
    """Writes ``library``'s hash to ``record`` (then both are renamed into place)."""
    record.write_text(digest(library) + "\n")


def mismatch(library: Path) -> str | None:
    """Why ``library`` is not the file we built (missing, not a plain file of ours, or bytes
    that differ from its record), or None when it is."""
    try:
        info = library.lstat()  # lstat: a symbolic link is not our build
    except FileNotFoundError:
        return "not built yet"
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        return f"{library.name} is not a plain file of yours"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{library.name} is writable by others"
    try:
        recorded = record_path(library).read_text().strip()
    except OSError:
        return f"{library.name} has no record of its build"
    if digest(library) != recorded:
        return f"{library.name} does not match the hash recorded when it was built"
    return None
