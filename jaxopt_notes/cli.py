"""The ``jaxopt-notes`` command line: ``experiments``, ``bench``, ``train``, ``hessian``.

Each subcommand lives beside the concept it drives; this module only wires them together.
A module that owns a subcommand exposes ``add_arguments(parser)`` and ``run_cli(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module that owns it, one-line help)
_COMMANDS = {
    "experiments": ("experiments", "list or run the experiments that test the notes' claims"),
    "bench": ("jaxopt_notes.bench", "time optimizer steps, Hessian tools and training"),
    "train": ("jaxopt_notes.train", "train LeNet or an MLP and write summary.json"),
    "hessian": ("jaxopt_notes.hessian_cli", "classify a critical point and plot the spectrum"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxopt-notes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in _COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            sub_parser.set_defaults(_missing=module_name)
            continue
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", None):
        print(
            f"jaxopt-notes {args.command}: module {args._missing} is not available", file=sys.stderr
        )
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
