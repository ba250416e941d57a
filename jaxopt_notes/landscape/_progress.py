"""Progress of a landscape on stderr: one bar per stage, named by the stage (and its grid),
with the time left; a stage with nothing to count (reading a run, Lanczos) shows its clock."""

from __future__ import annotations

import contextlib
import sys
import threading

from jaxopt_notes._extras import require

_POINTS = "{desc}: {n_fmt}/{total_fmt} points |{bar:20}| {elapsed} elapsed, ~{remaining} left"
_WAIT = "{desc}: {elapsed} elapsed"


class Stages:
    """``points(desc, total)`` yields the ``progress(done, total)`` of :func:`grid_values`;
    ``waiting(desc)`` shows a clock while its body runs. Nothing is drawn when disabled."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.tqdm = require("tqdm.auto", "train").tqdm

    @contextlib.contextmanager
    def points(self, desc: str, total: int):
        bar = self._bar(desc, total, _POINTS)
        with _ticking(bar):
            yield lambda done, _total: bar.update(done - bar.n)

    @contextlib.contextmanager
    def waiting(self, desc: str):
        with _ticking(self._bar(desc, None, _WAIT)):
            yield

    def _bar(self, desc, total, fmt):
        return self.tqdm(
            total=total, desc=desc, bar_format=fmt, disable=not self.enabled, file=sys.stderr
        )


@contextlib.contextmanager
def _ticking(bar):
    """Redraws ``bar`` every second while the body runs (a compile or a Lanczos run has no
    steps to count), then closes it."""
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        bar.close()
