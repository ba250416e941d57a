"""The commands' shared parser: options as a table, one error line, "did you mean".

A command lists its options as :class:`Option` rows and adds them with :func:`add_options`,
so the options read at a glance and every ``--help`` line ends with its default (and argparse
lists the choices). Every command parses with a :class:`CommandParser` and reports bad input
as one line, ``jaxopt-notes COMMAND: error: ...``, through :func:`fail`, with exit status 2;
a misspelt choice is answered with the nearest name (``--optimizer adma``: did you mean
``'adam'``?).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, NoReturn

from jaxopt_notes import _checks

PROG = "jaxopt-notes"


class Option(NamedTuple):
    flag: str
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None
    choices: Sequence[Any] | None = None


def seed(text: str) -> int:
    """An argparse type for seeds: an integer in [0, 2**63), what ``jax.random.key`` and the
    run files take (2**64 used to run, or crash after deleting).

    >>> seed("7")
    7
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed must be an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2**63), got {value}")
    return value


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Adds each row of ``options`` to ``parser``; a row with a default says it in its help."""
    for flag, text, kind, default, choices in options:
        extra = {k: v for k, v in (("type", kind), ("choices", choices)) if v is not None}
        suffix = "" if default is None else " (default: %(default)s)"
        parser.add_argument(flag, default=default, help=text + suffix, **extra)


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """``"; did you mean 'adam'?"`` when ``value`` is close to one of ``choices``, else ``""``.

    >>> did_you_mean("adma", ["sgd", "adam", "adamw"])
    "; did you mean 'adam'?"
    >>> did_you_mean("lbfgs", ["sgd", "adam"])
    ''
    """
    close = _checks.nearest(str(value), choices)
    return f"; did you mean {close!r}?" if close else ""


def as_flags(message: str, **names: str) -> str:
    """The library's sentence with its argument names as the command's options, so a user of
    ``--run`` is not told about `run_dir`.

    >>> as_flags("`run_dir` must be a run directory", run_dir="--run")
    '`--run` must be a run directory'
    """
    for argument, flag in names.items():
        message = message.replace(f"`{argument}`", f"`{flag}`")
    return message


def fail(command: str | None, message: str) -> int:
    """Prints ``jaxopt-notes COMMAND: error: MESSAGE`` on stderr (``jaxopt-notes: error:``
    without a command) and returns 2, the exit status of bad input."""
    prog = PROG if command is None else f"{PROG} {command}"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


class CommandParser(argparse.ArgumentParser):
    """argparse's parser with the commands' error line in place of argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip() or None
        sys.exit(fail(command, f"{message} (see {self.prog} -h)"))

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own check, worded with the nearest choice (its message lists them only)
        if action.choices is not None and value not in action.choices:
            listed = ", ".join(map(str, action.choices))
            hint = did_you_mean(value, action.choices)
            raise argparse.ArgumentError(
                action, f"invalid choice {value!r}{hint} (choose from {listed})"
            )
