"""The map of the notes: which sentences of the seed notes the experiments test, and how.

``notes_map.toml`` lists, note by note and in each note's order, every sentence a run could
test, with the ids ("experiment/claim_id") of the claims and checks that test it or, where there
are none, the reason. The map is read here and validated strictly, because a typo in a
hand-written file would otherwise pass silently as an untested sentence; ``coverage`` then sets
it against a run's results, to say how much of the notes is tested, with which verdicts, and
which ids on either side have no partner.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

MAP = Path(__file__).with_name("notes_map.toml")
NOT_TESTABLE = "not testable here:"
UNTESTED = "untested:"
VERDICTS = ("reproduced", "not_reproduced", "inconclusive")
KINDS = ("claim", "check")
_ID = re.compile(r"[a-z0-9_]+/[A-Za-z0-9_.]+")
_NOTE_FIELDS = ("file", "title", "english_title")
_SENTENCE_FIELDS = ("section", "quote", "english", "ids")


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One sentence of a note; ``ids`` test it, else ``reason`` says why nothing does."""

    section: str
    quote: str
    english: str
    ids: tuple[str, ...]
    reason: str = ""

    @property
    def testable(self) -> bool:
        return not self.reason.startswith(NOT_TESTABLE)


@dataclasses.dataclass(frozen=True)
class Note:
    """One seed note: its file name in shared/seeds, its title and its mapped sentences."""

    file: str
    title: str
    english_title: str
    sentences: tuple[Sentence, ...]


def _text(entry: dict, field: str, where: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: `{field}` must be a non-empty string, got {value!r}")
    return value


def _sentence(entry: dict, where: str) -> Sentence:
    extra = set(entry) - {*_SENTENCE_FIELDS, "reason"}
    if extra:  # a misspelt field would otherwise be dropped without a word
        raise ValueError(f"{where}: unknown field(s) {sorted(extra)}")
    section, quote, english = (_text(entry, f, where) for f in _SENTENCE_FIELDS[:3])
    ids = entry.get("ids")
    if not isinstance(ids, list):
        raise ValueError(f"{where}: `ids` must be a list of 'experiment/claim_id', got {ids!r}")
    for i in ids:
        if not isinstance(i, str) or not _ID.fullmatch(i):
            raise ValueError(f"{where}: `ids` entry {i!r} is not of the form 'experiment/claim_id'")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: `ids` repeats an id: {ids}")
    reason = entry.get("reason", "")
    if not ids:
        reason = _text(entry, "reason", where + " (no `ids`)")
    if reason and not reason.startswith((NOT_TESTABLE, UNTESTED)):
        raise ValueError(
            f"{where}: `reason` must start with {NOT_TESTABLE!r} or {UNTESTED!r}, got {reason!r}"
        )
    if ids and reason.startswith(NOT_TESTABLE):
        raise ValueError(f"{where}: `reason` says not testable, yet `ids` test it: {ids}")
    return Sentence(section, quote, english, tuple(ids), reason)


def parse(data: dict) -> list[Note]:
    """The notes of an already-read map, validated; a ``ValueError`` names the bad field."""
    entries = data.get("note")
    if not isinstance(entries, list) or not entries:
        raise ValueError("the map needs at least one [[note]]")
    notes = []
    for k, entry in enumerate(entries):
        extra = set(entry) - {*_NOTE_FIELDS, "sentence"}
        if extra:
            raise ValueError(f"note {k}: unknown field(s) {sorted(extra)}")
        file, title, english_title = (_text(entry, f, f"note {k}") for f in _NOTE_FIELDS)
        if any(n.file == file for n in notes):
            raise ValueError(f"note {k}: `file` {file!r} is mapped twice")
        raw = entry.get("sentence")
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"note {k} ({file}): `sentence` needs at least one [[note.sentence]]")
        sentences = tuple(_sentence(s, f"{file}, sentence {j}") for j, s in enumerate(raw))
        notes.append(Note(file, title, english_title, sentences))
    return notes


def load_map(path: str | Path | None = None) -> list[Note]:
    """The validated map at ``path`` (default: notes_map.toml beside this module)."""
    with open(path or MAP, "rb") as fh:
        return parse(tomllib.load(fh))


def combined_verdict(verdicts: list[str]) -> str:
    """A sentence tested by several claims is reproduced only if every one is, and is
    not reproduced as soon as one is not; anything else is inconclusive."""
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "not_reproduced" if "not_reproduced" in verdicts else "inconclusive"


def _empty() -> dict:
    return {
        "sentences": 0,
        "not_testable": 0,
        "testable": 0,
        "tested": 0,  # by at least one measured claim of the results (any kind but "check")
        "confirmed_by_checks": 0,  # only checks, all reproduced
        "checks_failed": 0,  # only checks, one of them not reproduced
        "untested": 0,  # nothing in the results (including ids the results lack)
        "verdicts": dict.fromkeys(VERDICTS, 0),
    }


def _count(tally: dict, sentence: Sentence, index: dict[str, dict]) -> None:
    tally["sentences"] += 1
    if not sentence.testable:
        tally["not_testable"] += 1
        return
    tally["testable"] += 1
    known = [index[i] for i in sentence.ids if i in index]
    claims = [c["verdict"] for c in known if c["kind"] != "check"]
    if claims:
        tally["tested"] += 1
        tally["verdicts"][combined_verdict(claims)] += 1
    elif known:
        passed = all(c["verdict"] == "reproduced" for c in known)
        tally["confirmed_by_checks" if passed else "checks_failed"] += 1
    else:
        tally["untested"] += 1


def coverage(notes: list[Note], results: list[dict]) -> dict:
    """How much of the notes the results test: counts per note file and in total, the map's
    ids the results lack (``unknown_ids``), the results' claims no sentence maps (``unmapped``:
    tests of something the notes do not say, or a gap in the map) and the mapped ids whose kind
    is neither claim nor check (``other_kinds``, e.g. a claim since marked as going beyond the
    notes: it still counts as a measured test here, but the map and the result disagree)."""
    index = {f"{r['name']}/{c['id']}": c for r in results for c in r["claims"]}
    per_note, total, mapped = {}, _empty(), set()
    for note in notes:
        tally = per_note.setdefault(note.file, _empty())
        for sentence in note.sentences:
            _count(tally, sentence, index)
            _count(total, sentence, index)
            mapped.update(sentence.ids)
    return {
        "per_note": per_note,
        "total": total,
        "unknown_ids": sorted(mapped - set(index)),
        "unmapped": sorted(k for k, c in index.items() if c["kind"] == "claim" and k not in mapped),
        "other_kinds": sorted(k for k in mapped & set(index) if index[k]["kind"] not in KINDS),
    }
