"""``jaxopt-notes build-kernels``: build the C++ kernels into the cache ahead of their first use.

Over :func:`jaxopt_notes._native.prepare`: a verified build already in the cache is kept, a
missing or mismatching one is built, and a cache directory others could write is refused.
"""

from __future__ import annotations

import argparse
import sys

from jaxopt_notes import _native
from jaxopt_notes.cli._options import fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxopt-notes build-kernels``."""
    names = sorted(_native.LIBRARIES)
    parser.add_argument(
        "--only", choices=names, help=f"build one library (default: all of {', '.join(names)})"
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even a verified cached build (default: no)"
    )


def run_cli(args: argparse.Namespace) -> int:
    """Builds what is missing and prints where each library is; 1 if one could not be built."""
    try:
        values = _native.settings()
    except ValueError as error:
        return fail("build-kernels", str(error))
    print(f"kernel cache: {_native.cache_dir()} (${_native.CACHE_ENV})")
    failed = False
    for name in [args.only] if args.only else sorted(_native.LIBRARIES):
        built = _native.prepare(_native.LIBRARIES[name], force=args.force, lazy=False)
        if built.path is not None:
            print(f"{name}: {built.action}, {built.path.name}")
            continue
        failed = True
        first, *rest = (built.reason or "").splitlines() or [""]
        fail("build-kernels", f"the {name} kernels: {first}")
        if rest:  # a compiler's diagnostics
            print("\n".join(rest), file=sys.stderr)
    shown = {key: "default" if value is None else value for key, value in values.items()}
    print("helper threads: " + ", ".join(f"${key}={value}" for key, value in shown.items()))
    return 1 if failed else 0
