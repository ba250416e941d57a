"""``jaxopt-notes experiments``: list the experiments, run one or all and write their reports,
or redraw the figures of runs from their ``result.json``."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from jaxopt_notes import _checks
from jaxopt_notes import experiments as lab
from jaxopt_notes.cli._options import as_flags, fail


class _HelpWithFields(argparse.Action):
    """``experiments run NAME --help`` also lists NAME's Config fields with their defaults."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        name = getattr(namespace, "name", None)
        if name in lab.NAMES:
            module = lab.load(name)
            print(f"\nfields of {name} (--set FIELD=VALUE; defaults are the full settings):")
            print("\n".join(lab.fields_help(module)))
            quick = lab.quick_changes(module)
            if quick:
                shown = ", ".join(f"{k}={b}" for k, (_, b) in quick.items())
                print(f"--quick changes: {shown}")
        else:
            print("\ngive a NAME before --help to list its fields: `experiments run NAME --help`")
        parser.exit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="name every experiment")
    run_parser = sub.add_parser("run", help="run one experiment, or all with --all", add_help=False)
    run_parser.add_argument("-h", "--help", action=_HelpWithFields, help="show this help")
    run_parser.add_argument("name", nargs="?", help=f"one of {', '.join(lab.NAMES)}")
    run_parser.add_argument("--all", action="store_true", help="run every experiment + REPORT")
    run_parser.add_argument("--quick", action="store_true", help="small settings (minutes)")
    run_parser.add_argument("--out", default="runs", help="output folder (default: runs)")
    run_parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override a field"
    )
    plot_parser = sub.add_parser(
        "plot", help="redraw the figures from result.json, without running anything"
    )
    plot_parser.add_argument(
        "dir", metavar="DIR", help="one experiment's folder (OUT/NAME) or --all's OUT folder"
    )


def _fail(message: str) -> int:
    return fail("experiments", message)


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _plot(folder: str) -> int:
    try:
        written = lab.plot(folder)
    except ValueError as error:
        return _fail(as_flags(str(error), folder="DIR"))
    for path in written:
        print(path)
    print(f"redrew {len(written)} figure(s) under {folder}")
    return 0


def run_cli(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in lab.NAMES:
            print(f"{name:24s} {lab.load(name).SUMMARY}")
        return 0
    if args.action == "plot":
        return _plot(args.dir)
    if args.all == bool(args.name):
        return _fail("give one NAME or --all to `experiments run`, not both or neither")
    try:
        if args.name:
            _checks.one_of("NAME", args.name, lab.NAMES)
    except ValueError as error:
        return _fail(str(error))
    bad = [item for item in args.set if "=" not in item]
    if bad:
        return _fail(f"`--set` takes FIELD=VALUE, got {bad[0]!r}")
    overrides = dict(item.split("=", 1) for item in args.set)
    names = lab.NAMES if args.all else [args.name]
    try:  # every bad field is refused before anything runs
        per = lab.split_overrides(overrides) if args.all else {args.name: overrides}
        for name in names:
            lab.make_config(lab.load(name), args.quick, per[name])
        Path(args.out).mkdir(parents=True, exist_ok=True)
        if not _writable(Path(args.out)):
            return _fail(f"`--out` {args.out!r} is not a writable folder")
    except ValueError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"`--out` {args.out!r} cannot be made a folder: {e.strerror or e}")
    if args.all:
        try:
            results = lab.run_all(args.out, args.quick, overrides)
        except RuntimeError as error:  # some experiments failed; the others' report is written
            fail("experiments", str(error))
            return 1
    else:
        results = lab.run_many([args.name], args.out, args.quick, {args.name: overrides})[0]
    for r in results:
        for c in r["claims"]:
            label = c["verdict"] if c["kind"] == "claim" else f"{c['kind']} {c['verdict']}"
            print(f"[{label:>22s}] {r['name']}: {c['claim']}")
    print(lab.tally_line([c for r in results for c in r["claims"]]))
    covered = lab.coverage(results) if args.all else None
    if covered:
        print(covered)
    where = Path(args.out) if args.all else Path(args.out) / args.name
    print(f"wrote {where / 'REPORT.md'} and {where / 'REPORT.html'}")
    return 0
