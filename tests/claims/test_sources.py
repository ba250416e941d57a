"""Every quote an experiment cites is in its seed note, word for word.

The notes live beside the checkout (``../shared/seeds``); a clone without them skips, saying so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jaxopt_notes.experiments._claims import Source

from jaxopt_notes import experiments

NOTES = Path(experiments.__file__).parents[2] / "shared" / "seeds"


def module_sources(module) -> list[Source]:
    """The sources a module declares: as constants, or inside a dict, tuple or list constant."""
    found = []
    for value in vars(module).values():
        if isinstance(value, Source):
            found.append(value)
        elif isinstance(value, dict):
            found += [v for v in value.values() if isinstance(v, Source)]
        elif isinstance(value, (tuple, list)):
            found += [v for v in value if isinstance(v, Source)]
    return found


@pytest.mark.parametrize("name", experiments.NAMES)
def test_every_declared_quote_is_verbatim_in_its_note(name):
    if not NOTES.is_dir():
        pytest.skip(f"the seed notes are not beside this checkout ({NOTES})")
    sources = module_sources(experiments.load(name))
    assert sources, f"{name} declares no Source"
    for src in sources:
        assert src.quote in (NOTES / src.note).read_text(encoding="utf-8"), (name, src.quote)


def test_a_misquote_is_caught():
    if not NOTES.is_dir():
        pytest.skip(f"the seed notes are not beside this checkout ({NOTES})")
    src = module_sources(experiments.load("clipping"))[0]
    assert src.quote + "（不在原文）" not in (NOTES / src.note).read_text(encoding="utf-8")
