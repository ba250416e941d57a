"""The map of the notes (experiments/notes_map.toml) holds together.

Its quotes are the notes' own words, in the notes' order; its ids name claims and checks the
experiments really make; a malformed entry is refused with the field named; and ``coverage``
counts a made-up set of results as worked out by hand, unknown and unmapped ids included.
The notes live beside the checkout (``../shared/seeds``); without them the quote tests skip.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jaxopt_notes.experiments import _notes

from jaxopt_notes import experiments

NOTES = Path(experiments.__file__).parents[2] / "shared" / "seeds"
QUICK = Path(experiments.__file__).parents[1] / "bench_results" / "experiments" / "quick.json"
MAP = _notes.load_map()


def _seed_text(file: str) -> str:
    if not NOTES.is_dir():
        pytest.skip(f"the seed notes are not beside this checkout ({NOTES})")
    return (NOTES / file).read_text(encoding="utf-8")


@pytest.mark.parametrize("note", MAP, ids=lambda n: n.file)
def test_quotes_are_verbatim_and_in_the_notes_order(note):
    text, start = _seed_text(note.file), 0
    for s in note.sentences:
        assert s.quote in text, (note.file, s.quote)
        found = text.find(s.quote, start)  # the next occurrence: a repeated phrase is fine
        assert found >= 0, f"{note.file}: {s.quote!r} comes before the sentence mapped above it"
        start = found


def test_every_seed_note_is_mapped_once():
    if not NOTES.is_dir():
        pytest.skip(f"the seed notes are not beside this checkout ({NOTES})")
    files = [n.file for n in MAP]
    assert sorted(files) == sorted(p.name for p in NOTES.glob("*.txt"))


def _quick_ids() -> dict[str, set[str]]:
    """The claim ids of the last recorded run, for ids an experiment builds at run time."""
    if not QUICK.is_file():
        return {}
    runs = json.loads(QUICK.read_text())["experiments"]
    return {r["name"]: {c["id"] for c in r["claims"]} for r in runs}


def test_every_id_names_a_claim_of_an_experiment():
    recorded = _quick_ids()
    for note in MAP:
        for s in note.sentences:
            for full in s.ids:
                name, claim_id = full.split("/")
                assert name in experiments.NAMES, f"{note.file}: {full}: no experiment {name!r}"
                source = (Path(experiments.__file__).parent / f"{name}.py").read_text()
                assert f'"{claim_id}"' in source or claim_id in recorded.get(name, ()), (
                    f"{note.file}: {full}: {name}.py has no id {claim_id!r} (nor has its last run)"
                )


def test_a_sentence_is_either_mapped_or_explained():
    for note in MAP:
        for s in note.sentences:
            assert s.ids or s.reason.startswith((_notes.NOT_TESTABLE, _notes.UNTESTED))


# --- validation --------------------------------------------------------------------------------

GOOD = {
    "note": [
        {
            "file": "a.txt",
            "title": "标题",
            "english_title": "title",
            "sentence": [
                {"section": "s", "quote": "q", "english": "e", "ids": ["e1/c1"]},
                {"section": "s", "quote": "r", "english": "f", "ids": [], "reason": "untested: x"},
            ],
        }
    ]
}


def _broken(change) -> dict:
    data = copy.deepcopy(GOOD)
    change(data["note"][0], data["note"][0]["sentence"])
    return data


BAD = {
    "note without file": (lambda n, s: n.pop("file"), "`file`"),
    "note without title": (lambda n, s: n.pop("title"), "`title`"),
    "note without english_title": (lambda n, s: n.pop("english_title"), "`english_title`"),
    "note with a misspelt field": (lambda n, s: n.update(titel="x"), "titel"),
    "note without sentences": (lambda n, s: s.clear(), "`sentence`"),
    "sentence without section": (lambda n, s: s[0].pop("section"), "`section`"),
    "sentence without quote": (lambda n, s: s[0].pop("quote"), "`quote`"),
    "sentence with an empty quote": (lambda n, s: s[0].update(quote=" "), "`quote`"),
    "sentence without english": (lambda n, s: s[0].pop("english"), "`english`"),
    "sentence without ids": (lambda n, s: s[0].pop("ids"), "`ids`"),
    "ids not a list": (lambda n, s: s[0].update(ids="e1/c1"), "`ids`"),
    "id without experiment": (lambda n, s: s[0].update(ids=["c1"]), "`ids`"),
    "id with two slashes": (lambda n, s: s[0].update(ids=["e1/c1/x"]), "`ids`"),
    "id repeated": (lambda n, s: s[0].update(ids=["e1/c1", "e1/c1"]), "`ids`"),
    "no ids and no reason": (lambda n, s: s[1].pop("reason"), "`reason`"),
    "reason of another kind": (lambda n, s: s[1].update(reason="it is hard"), "`reason`"),
    "mapped yet not testable": (
        lambda n, s: s[0].update(reason="not testable here: x"),
        "`reason`",
    ),
    "sentence with a misspelt field": (lambda n, s: s[0].update(id=["e1/c1"]), "'id'"),
}


def test_the_good_entry_passes():
    (note,) = _notes.parse(GOOD)
    assert note.sentences[0].ids == ("e1/c1",) and note.sentences[1].reason == "untested: x"
    assert note.sentences[1].testable


@pytest.mark.parametrize("case", BAD)
def test_a_bad_entry_is_refused_naming_its_field(case):
    change, field = BAD[case]
    with pytest.raises(ValueError) as err:
        _notes.parse(_broken(change))
    assert field in str(err.value), str(err.value)


def test_a_note_mapped_twice_is_refused():
    data = copy.deepcopy(GOOD)
    data["note"].append(copy.deepcopy(data["note"][0]))
    with pytest.raises(ValueError, match="`file`"):
        _notes.parse(data)


def test_load_map_reads_a_file(tmp_path):
    path = tmp_path / "map.toml"
    path.write_text(
        '[[note]]\nfile = "a.txt"\ntitle = "t"\nenglish_title = "t"\n'
        '[[note.sentence]]\nsection = "s"\nquote = "q"\nenglish = "e"\nids = []\n'
        'reason = "not testable here: advice"\n',
        encoding="utf-8",
    )
    (note,) = _notes.load_map(path)
    assert note.file == "a.txt" and not note.sentences[0].testable


# --- coverage ----------------------------------------------------------------------------------


def _s(ids: list[str], reason: str = "") -> dict:
    entry = {"section": "s", "quote": "q", "english": "e", "ids": ids}
    return {**entry, "reason": reason} if reason else entry


NOTES_FIXTURE = _notes.parse(
    {
        "note": [
            {
                "file": "a.txt",
                "title": "A",
                "english_title": "A",
                "sentence": [
                    _s(["e1/c1"]),  # tested, reproduced
                    _s(["e1/c1", "e1/c2"]),  # tested, one claim not reproduced
                    _s(["e1/k1"]),  # a passing check only
                    _s([], "untested: needs a run"),
                    _s([], "not testable here: advice"),
                ],
            },
            {
                "file": "b.txt",
                "title": "B",
                "english_title": "B",
                "sentence": [
                    _s(["e2/c3", "e2/k2"]),  # the claim decides: inconclusive
                    _s(["e2/gone"]),  # an id the results lack: untested, and reported
                    _s(["e2/k3"]),  # a failing check only
                    _s(["e1/c1", "e2/c3"]),  # reproduced + inconclusive: inconclusive
                ],
            },
        ]
    }
)


def _c(claim_id: str, kind: str, verdict: str) -> dict:
    return {"id": claim_id, "kind": kind, "verdict": verdict}


RESULTS = [
    {
        "name": "e1",
        "claims": [
            _c("c1", "claim", "reproduced"),
            _c("c2", "claim", "not_reproduced"),
            _c("k1", "check", "reproduced"),
        ],
    },
    {
        "name": "e2",
        "claims": [
            _c("c3", "claim", "inconclusive"),
            _c("k2", "check", "reproduced"),
            _c("k3", "check", "not_reproduced"),
            _c("c4", "claim", "reproduced"),  # no sentence maps it
            _c("k4", "check", "reproduced"),  # an unmapped check is not reported
        ],
    },
]


def _tally(sentences, not_testable, tested, by_checks, failed, untested, rep, nrep, inc) -> dict:
    return {
        "sentences": sentences,
        "not_testable": not_testable,
        "testable": sentences - not_testable,
        "tested": tested,
        "confirmed_by_checks": by_checks,
        "checks_failed": failed,
        "untested": untested,
        "verdicts": {"reproduced": rep, "not_reproduced": nrep, "inconclusive": inc},
    }


def test_coverage_counts_as_worked_out_by_hand():
    got = _notes.coverage(NOTES_FIXTURE, RESULTS)
    assert got["per_note"] == {
        "a.txt": _tally(5, 1, 2, 1, 0, 1, 1, 1, 0),
        "b.txt": _tally(4, 0, 2, 0, 1, 1, 0, 0, 2),
    }
    assert got["total"] == _tally(9, 1, 4, 1, 1, 2, 1, 1, 2)
    assert got["unknown_ids"] == ["e2/gone"]
    assert got["unmapped"] == ["e2/c4"]
    assert got["other_kinds"] == []


def test_coverage_counts_an_unknown_id_once_the_results_have_it():
    results = copy.deepcopy(RESULTS)
    results[1]["claims"].append(_c("gone", "claim", "not_reproduced"))
    got = _notes.coverage(NOTES_FIXTURE, results)
    assert got["unknown_ids"] == [] and got["unmapped"] == ["e2/c4"]
    assert got["per_note"]["b.txt"]["untested"] == 0
    assert got["per_note"]["b.txt"]["verdicts"]["not_reproduced"] == 1


def test_a_mapped_claim_of_another_kind_counts_as_measured_and_is_reported():
    results = copy.deepcopy(RESULTS)
    results[0]["claims"][1]["kind"] = "beyond"  # e1/c2, not reproduced, mapped by a.txt's 2nd
    results[1]["claims"][3]["kind"] = "beyond"  # e2/c4, unmapped: no longer reported
    got = _notes.coverage(NOTES_FIXTURE, results)
    assert got["per_note"]["a.txt"]["verdicts"]["not_reproduced"] == 1
    assert got["other_kinds"] == ["e1/c2"] and got["unmapped"] == []


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["reproduced", "reproduced"], "reproduced"),
        (["reproduced", "not_reproduced", "inconclusive"], "not_reproduced"),
        (["reproduced", "inconclusive"], "inconclusive"),
    ],
)
def test_combined_verdict(verdicts, expected):
    assert _notes.combined_verdict(verdicts) == expected


def test_the_map_knows_every_id_of_the_last_run():
    if not QUICK.is_file():
        pytest.skip(f"no recorded run at {QUICK}")
    got = _notes.coverage(MAP, json.loads(QUICK.read_text())["experiments"])
    assert got["unknown_ids"] == []
    total = got["total"]
    assert total["testable"] == (
        total["tested"] + total["confirmed_by_checks"] + total["checks_failed"] + total["untested"]
    )
