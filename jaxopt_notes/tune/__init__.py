"""Tuning and diagnosis as the notes teach it (cs231n's slides on choosing hyperparameters,
Saito 6.5): sanity checks, a learning-rate range test, coarse-to-fine random search on a log
scale in one compiled program per stage, a reading of the loss curves, and ensembles.

>>> from jaxopt_notes.tune import parse_range
>>> parse_range("weight_decay=1e-6:1e-2").scale
'log'
"""

from jaxopt_notes.tune._trials import defaults, fixed, searchable
from jaxopt_notes.tune.doctor import (
    CASES,
    RULES,
    Diagnosis,
    Finding,
    diagnose,
)
from jaxopt_notes.tune.runs import diagnose_run, plot_diagnosis, read_metrics
from jaxopt_notes.tune.search import SearchResult, plot_search, run_stage, search
from jaxopt_notes.tune.space import SCALES, Range, check_space, parse_range, sample

__all__ = [
    "CASES",
    "RULES",
    "SCALES",
    "Diagnosis",
    "Finding",
    "Range",
    "SearchResult",
    "check_space",
    "defaults",
    "diagnose",
    "diagnose_run",
    "parse_range",
    "plot_diagnosis",
    "plot_search",
    "read_metrics",
    "run_stage",
    "sample",
    "search",
    "searchable",
    "fixed",
]
