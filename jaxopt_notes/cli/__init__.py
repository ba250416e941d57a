"""The ``jaxopt-notes`` command line: ``experiments``, ``bench``, ``train``, ``hessian``.

Each subcommand lives beside the concept it drives; this module only wires them together.
A module that owns a subcommand exposes ``add_arguments(parser)`` and ``run_cli(args) -> int``.
"""

from __future__ import annotations

import importlib
import sys

from jaxopt_notes._extras import MissingExtra
from jaxopt_notes.cli._options import CommandParser, did_you_mean, fail

# subcommand -> (module that owns it, one-line help)
_COMMANDS = {
    "experiments": ("jaxopt_notes.cli.experiments", "list or run the experiments on the notes"),
    "bench": ("jaxopt_notes.cli.bench", "time optimizer steps, Hessian tools and training"),
    "train": ("jaxopt_notes.cli.train", "train LeNet or an MLP and write summary.json"),
    "hessian": ("jaxopt_notes.cli.hessian", "the Hessian of a trained run or a 2-D function"),
    "landscape": ("jaxopt_notes.cli.landscape", "draw the loss landscape of one or two runs"),
    "tune": ("jaxopt_notes.cli.tune", "sanity checks, a learning-rate range test, a search"),
    "doctor": ("jaxopt_notes.cli.doctor", "name what a run's loss and accuracy curves show"),
    "saddles": (
        "jaxopt_notes.cli.saddles",
        "find, classify and escape a run's nearest critical point",
    ),
    "build-kernels": ("jaxopt_notes.cli.build_kernels", "build the C++ kernels into the cache"),
}


def _usage() -> str:
    lines = [
        "usage: jaxopt-notes COMMAND [options]   (jaxopt-notes COMMAND -h for its options)",
        "",
    ]
    lines += [f"  {name:12s} {help_text}" for name, (_, help_text) in _COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatches to the module owning the command; only that module is imported. Bad options
    and a missing extra are one line, ``jaxopt-notes COMMAND: error: ...``, exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in _COMMANDS:
        code = fail(None, f"unknown command {command!r}{did_you_mean(command, _COMMANDS)}")
        print(f"\n{_usage()}", file=sys.stderr)
        return code
    module_name, help_text = _COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
        parser = CommandParser(prog=f"jaxopt-notes {command}", description=help_text)
        module.add_arguments(parser)
        return int(module.run_cli(parser.parse_args(rest)) or 0)
    except MissingExtra as missing:  # a slim install: say which extra, no traceback
        return fail(command, str(missing))


if __name__ == "__main__":
    sys.exit(main())
