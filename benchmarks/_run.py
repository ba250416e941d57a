"""One benchmark as ``jaxopt-notes bench KIND`` runs it: the measurement and its file set."""

from __future__ import annotations

import difflib
import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxopt_notes.benchmarks._machine import machine
from jaxopt_notes.benchmarks.step import PAIRS, bench_step, markdown_table, plot_rows

KINDS = ("step", "hessian", "train")


def run(
    kind: str,
    out_dir: str | Path,
    *,
    quick: bool = False,
    optimizers: Sequence[str] = ("adam",),
) -> dict[str, Any]:
    """Runs the benchmark ``kind`` and writes its one file set into ``out_dir`` (made if need
    be): ``KIND.json`` (the result with the machine and versions) and its table or figures
    (``step``: ``step.md``, ``step.png``; ``hessian``: ``hessian.md``). Returns the result.

    ``quick``: fewer rounds, smaller sizes; ``optimizers``: the rows of ``step`` (names of
    :data:`PAIRS`). The measuring functions are called without a folder, so they write
    nothing of their own beside the file set.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    unknown = [name for name in optimizers if name not in PAIRS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(PAIRS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"`optimizers` must name some of {', '.join(PAIRS)}, got {unknown[0]!r}{hint}"
        )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"the output folder {str(out)!r} cannot be made: {error.strerror or error}"
        ) from None
    if kind == "step":
        sizes = {"sizes": (1_000_000,), "rounds": 5} if quick else {}
        rows = bench_step(tuple(optimizers), **sizes)
        (out / "step.md").write_text(markdown_table(rows) + "\n")
        plot_rows(rows, out / "step.png")
        result: dict[str, Any] = {"rows": rows}
    else:
        module = importlib.import_module(f"jaxopt_notes.benchmarks.{kind}")
        result = getattr(module, f"bench_{kind}")(out_dir=None, quick=quick)
        if kind == "hessian":
            (out / "hessian.md").write_text(module.markdown(result) + "\n")
    result = {"benchmark": kind, "machine": machine(), **result}
    (out / f"{kind}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
