"""What every experiment's result must hold (API.md), shared by the per-experiment tests."""

from __future__ import annotations

import json
from pathlib import Path

from jaxopt_notes.experiments import _claims

from jaxopt_notes import experiments

NOTES = Path(experiments.__file__).parents[2] / "shared" / "seeds"


def run_tiny(name: str, tmp_path: Path, **overrides) -> dict:
    """Runs ``name`` on its tiny settings with ``--set`` overrides; checks the contract."""
    out = tmp_path / ("sabotaged" if overrides else "plain")
    texts = {k: str(v) for k, v in overrides.items()}
    result = experiments.run(name, out, quick="tiny", overrides=texts)
    assert_contract(name, out)
    return result


def assert_contract(name: str, out: Path) -> None:
    on_disk = json.loads((out / name / "result.json").read_text())
    assert on_disk["name"] == name and on_disk["data"] and on_disk["config"]
    assert on_disk["claims"], "an experiment needs a claim, a beyond or a check"
    for c in on_disk["claims"]:
        assert c["kind"] in _claims.KINDS and c["verdict"] in _claims.VERDICTS
        assert c["evidence"] and c["reason"] and c["id"]
        if c["kind"] == "beyond":
            assert c["source"]["reference"], c["id"]
        if c["kind"] in ("claim", "beyond"):
            assert c["source"]["note"] and c["source"]["quote"] and c["source"]["english"]
            assert {"quantity", "comparison", "threshold", "seeds", "origin"} <= set(c["test"])
            if NOTES.is_dir():  # also catches a source built inside claims(), not declared
                note = (NOTES / c["source"]["note"]).read_text(encoding="utf-8")
                assert c["source"]["quote"] in note, (c["id"], c["source"]["quote"])
    for fig in on_disk["figures"]:
        assert (out / name / fig).read_bytes()[:4] == b"\x89PNG"
    assert (out / name / "REPORT.md").read_text().startswith(f"# {name}")
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a work dir was left"


def verdict_of(result: dict, claim_id: str) -> str:
    """The verdict of the claim or check with that ``id``."""
    found = [c for c in result["claims"] if c["id"] == claim_id]
    assert len(found) == 1, f"{len(found)} entries have the id {claim_id!r}"
    return found[0]["verdict"]
