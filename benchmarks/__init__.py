"""The benchmarks behind ``jaxopt-notes bench``: speed measured against the peers in the same
run, with the machine it ran on. Never a test, and never imported by ``import jaxopt_notes``.

``step`` (:mod:`~jaxopt_notes.benchmarks.step`) times one jitted optimizer step against optax
and torch.optim; ``hessian`` and ``train`` (:mod:`~jaxopt_notes.benchmarks.hessian`,
:mod:`~jaxopt_notes.benchmarks.train`) time the Hessian tools and training against their
peers. :func:`run` runs one of them and writes its file set.
"""

from jaxopt_notes.benchmarks._machine import cpu_model, machine, peak_rss_mb
from jaxopt_notes.benchmarks._run import KINDS, run
from jaxopt_notes.benchmarks.step import PAIRS, bench_step, markdown_table, plot_rows

__all__ = [
    "KINDS",
    "PAIRS",
    "bench_step",
    "cpu_model",
    "machine",
    "markdown_table",
    "peak_rss_mb",
    "plot_rows",
    "run",
]
