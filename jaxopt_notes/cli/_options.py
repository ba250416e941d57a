"""Command-line options as a table: one row an option, its default said in its help.

A command lists its options as :class:`Option` rows and adds them with :func:`add_options`,
so the options read at a glance and every ``--help`` line ends with its default (and argparse
lists the choices, and ends a value outside them with one ``error:`` line and exit code 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple


class Option(NamedTuple):
    flag: str
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None
    choices: Sequence[Any] | None = None


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Adds each row of ``options`` to ``parser``; a row with a default says it in its help."""
    for flag, text, kind, default, choices in options:
        extra = {k: v for k, v in (("type", kind), ("choices", choices)) if v is not None}
        suffix = "" if default is None else " (default: %(default)s)"
        parser.add_argument(flag, default=default, help=text + suffix, **extra)
