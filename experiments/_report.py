"""REPORT.md and REPORT.html: "The notes, tested", read note by note.

The book has one chapter per seed note, named by the note's own title, with its testable
sentences in the note's order (from ``notes_map.toml``): each sentence quoted, rendered in
English, and followed by the claims that test it (verdict, one sentence in plain words, the
stated test, the interval table, the experiment's figure) or by the reason it is not tested.
Then the statements from beyond the notes, the checks of the library's math, and an index per
experiment (settings, data, time). Markdown and HTML are rendered from one list of blocks, so
the two say the same thing; the HTML embeds its figures and is one self-contained file.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from jaxopt_notes.experiments._claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, tally
from jaxopt_notes.experiments._claims import LABEL as _LABEL

_PACKAGES = ("jax", "jaxlib", "optax", "flax", "numpy", "scipy", "matplotlib")
_CHECK_LABEL = {REPRODUCED: "pass", NOT_REPRODUCED: "fail", INCONCLUSIVE: "undecided"}


def run_header() -> dict:
    """Versions, date and machine, recorded in every result."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
        "versions": versions,
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
    }


def fmt(x: Any) -> str:
    """Numbers to three significant figures; everything else as short text."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.3g}"
    if isinstance(x, str):
        return x
    if isinstance(x, list | tuple):
        if len(x) <= 6 and all(not isinstance(v, list | dict) for v in x):
            return "[" + ", ".join(fmt(v) for v in x) + "]"
        return f"({len(x)} values: in result.json)"
    return json.dumps(x)[:120]


# -- plain text for learners ------------------------------------------------------------------

_TEX = {
    r"\beta": "β", r"\eta": "η", r"\rho": "ρ", r"\theta": "θ", r"\sigma": "σ", r"\mu": "μ",
    r"\alpha": "α", r"\gamma": "γ", r"\epsilon": "ε", r"\varepsilon": "ε", r"\psi": "ψ",
    r"\phi": "φ", r"\partial": "∂", r"\nabla": "∇", r"\cdot": "·", r"\odot": "⊙",
    r"\leftarrow": "←", r"\sum": "Σ", r"\cdots": "…", r"\vdots": "⋮", r"\in": "∈",
    r"\geq": "≥", r"\leq": "≤", r"\max": "max", r"\times": "×", r"\quad": " ", r"\left": "",
    r"\right": "", r"\,": " ",
}  # fmt: skip


def plain_math(text: str) -> str:
    """TeX inside a quote as readable plain text (the report works offline, with no renderer).

    >>> plain_math(r"$v \\leftarrow \\beta v + \\frac{\\partial L}{\\partial W}$")
    'v ← β v + (∂ L)/(∂ W)'
    """
    text = text.replace("**", "")  # the notes' Markdown bold, not part of the sentence
    if "\\" not in text and "$" not in text:
        return text
    out = text.replace("$$", "").replace("$", "")
    for _ in range(3):  # nested \frac{\sqrt{a}}{b}: unwrap from the inside out
        out = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1)/(\2)", out)
        out = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r"√(\1)", out)
        out = re.sub(r"\\(?:boldsymbol|mathrm|mathbf|text|hat)\s*\{([^{}]*)\}", r"\1", out)
    for tex in sorted(_TEX, key=len, reverse=True):  # longest first: \varepsilon before \epsilon
        out = re.sub(re.escape(tex) + r"(?![a-zA-Z])", _TEX[tex], out)
    out = re.sub(r"\\(?:begin|end)\{[^}]*\}", "", out).replace("\\\\", " ")
    return re.sub(r"[ \t]+", " ", out.replace("{", "").replace("}", "")).strip()


def _side(test: dict) -> str:
    if test["comparison"] == "within":
        low, high = test["threshold"]
        return f"inside [{fmt(low)}, {fmt(high)}]"
    return ("above " if test["comparison"] == ">" else "below ") + fmt(test["threshold"])


def plain_words(entry: dict) -> str:
    """One sentence a learner understands: what was measured, which way it fell, what it means."""
    verdict = entry["verdict"]
    parts = entry.get("test", {}).get("parts") or []
    measured = entry.get("measured") or []
    found = []
    for test, m in zip(parts, measured, strict=False):
        found.append(
            f"{test['quantity']} came out {fmt(m['value'])} (95% interval {fmt(m['ci_low'])} "
            f"to {fmt(m['ci_high'])}, n = {m['n']}), the statement needs it {_side(test)}"
        )
    what = "; ".join(found) or entry.get("reason", "")
    meaning = {
        REPRODUCED: "The runs support the statement: the whole interval lies on its side",
        NOT_REPRODUCED: "The runs contradict the statement here: the interval lies on the "
        "other side, so under these settings it does not hold",
        INCONCLUSIVE: "The runs cannot tell: the interval reaches across the threshold, so "
        "more seeds, a longer budget or a larger effect would be needed to decide",
    }[verdict]
    text = f"{meaning}. Measured: {what}."
    for name, v in (entry.get("settings") or {}).items():
        text += f" {name[0].upper()}{name[1:]}, it is {_LABEL[v]}."
    return text


# -- blocks: one description of the report, two renderings ------------------------------------


def _is_estimate(v: Any) -> bool:
    return isinstance(v, dict) and {"value", "ci_low", "ci_high", "n"} <= set(v)


def _rows(evidence: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, str, str, str]]:
    """(quantity, value, 95% CI, n) rows of an entry's evidence, nested dicts flattened."""
    rows = []
    for k, v in evidence.items():
        name = f"{prefix}{k}"
        if _is_estimate(v):
            ci = f"[{fmt(v['ci_low'])}, {fmt(v['ci_high'])}]"
            rows.append((name, fmt(v["value"]), ci, fmt(v["n"])))
        elif isinstance(v, dict) and depth < 2:
            rows += _rows(v, f"{name} / ", depth + 1)
        else:
            rows.append((name, fmt(v), "", ""))
    return rows


def _entry_blocks(e: dict, folder: str, figures: list[str]) -> list[tuple]:
    """An entry (claim or beyond) as blocks: heading line, plain words, test, table, figures."""
    blocks: list[tuple] = [("entry", e["claim"], e["verdict"], e["_where"])]
    blocks.append(("p", plain_words(e)))
    items = [f"Test: {t['statement']}" for t in e["test"]["parts"]]
    items.append(f"Decided because {e['reason']}.")
    ref = e.get("source", {}).get("reference")
    if ref:
        items.append(f"Reference: {ref}.")
    blocks.append(("list", items))
    blocks.append(("table", ["measured", "value", "95% CI", "n"], _rows(e["evidence"])))
    blocks += [("img", f"{folder}{fig}", f"{e['_where']}: {fig}") for fig in figures]
    return blocks


def _quote_blocks(s: dict) -> tuple:
    return ("quote", plain_math(s["quote"]), plain_math(s["english"]), s.get("section", ""))


def _indexed(results: list[dict]) -> dict[str, dict]:
    """Every entry by "experiment/id", with where it came from attached."""
    out = {}
    for r in results:
        for c in r["claims"]:
            out[f"{r['name']}/{c['id']}"] = c | {"_where": r["name"]}
    return out


def _note_chapter(note: Any, entries: dict, results: list[dict], shown: set) -> list[tuple]:
    """One note's chapter: its sentences in order, each with its claims or its reason."""
    figures = {r["name"]: r.get("figures", []) for r in results}
    title = (
        note.title if note.english_title == note.title else f"{note.title} ({note.english_title})"
    )
    blocks: list[tuple] = [("h2", title, note.file), ("small", f"Note file: {note.file}")]
    from jaxopt_notes.experiments import _notes

    blocks.append(("p", coverage_line(_notes.coverage([note], results)["total"]) + "."))
    for s in note.sentences:
        blocks.append(("quote", plain_math(s.quote), plain_math(s.english), s.section))
        found = [entries[i] for i in s.ids if i in entries]
        if not found:
            blocks.append(("small", s.reason or "No result for this sentence in this run."))
        for e in found:
            key = f"{e['_where']}/{e['id']}"
            if e["kind"] == "check":
                blocks.append(("entry", e["claim"], e["verdict"], e["_where"], "check"))
                blocks.append(("small", f"A check of the math (not counted): {e['reason']}."))
                continue
            blocks += _entry_blocks(e, f"{e['_where']}/", _first(e, figures, shown))
            shown.add(key)
    return blocks


def _first(e: dict, figures: dict, shown: set) -> list[str]:
    """The entry's experiment's figures not yet shown in the book (each is shown once)."""
    new = [f for f in figures.get(e["_where"], []) if (e["_where"], f) not in shown]
    shown.update((e["_where"], f) for f in new)
    return new


def _book_blocks(results: list[dict], notes: list | None) -> list[tuple]:
    entries = _indexed(results)
    figures = {r["name"]: r.get("figures", []) for r in results}
    shown: set = set()
    blocks: list[tuple] = []
    for note in notes or []:
        blocks += _note_chapter(note, entries, results, shown)
    claims = [e for k, e in entries.items() if e["kind"] == "claim" and k not in shown]
    if claims:  # claims of the notes that no sentence of the map names (or no map at all)
        heading = "Other statements of the notes" if notes else "Claims of the notes"
        blocks.append(("h2", heading, "other"))
        for e in claims:
            blocks.append(_quote_blocks(e["source"]))
            blocks += _entry_blocks(e, f"{e['_where']}/", _first(e, figures, shown))
    beyond = [e for e in entries.values() if e["kind"] == "beyond"]
    if beyond:
        blocks.append(("h2", "Beyond the notes", "beyond"))
        blocks.append(
            (
                "p",
                "Statements from outside sources (papers, books) that the notes do not make, "
                "kept because they teach; decided like claims, counted apart.",
            )
        )
        for e in beyond:
            blocks.append(_quote_blocks(e["source"]))
            blocks += _entry_blocks(e, f"{e['_where']}/", _first(e, figures, shown))
    checks = [e for e in entries.values() if e["kind"] == "check"]
    if checks:
        blocks.append(("h2", "Checks of the library's math", "checks"))
        rows = [
            (
                f"{e['_where']}: {e['claim']}",
                _CHECK_LABEL[e["verdict"]],
                "; ".join(f"{a} = {b}" for a, b, _, _ in _rows(e["evidence"]))[:300],
            )
            for e in checks
        ]
        blocks.append(("table", ["check", "result", "evidence"], rows))
    return blocks


def _index_blocks(r: dict, folder: str, with_figures: bool) -> list[tuple]:
    """The per-experiment index: summary, data, settings, tally, figures, entries and verdicts."""
    t = r.get("tally") or tally(r["claims"])
    blocks: list[tuple] = [("h3", r["name"], r["name"]), ("p", r.get("summary", ""))]
    blocks.append(("p", f"Data: {r.get('data', 'not stated')}."))
    changed = r.get("changed_from_default", {})
    cells = [
        f"{k}={fmt(v)}" + (f" (default {fmt(changed[k]['default'])})" if k in changed else "")
        for k, v in r["config"].items()
    ]
    mode = {True: "quick", "tiny": "tiny (tests)", False: "full (the source's settings)"}
    blocks.append(("small", f"Mode: {mode.get(r.get('quick'), r.get('quick'))}. Settings: "
                   + ", ".join(cells) + "."))  # fmt: skip
    if changed and r.get("quick") and r.get("quick_note"):
        blocks.append(("small", f"What the smaller budget changed: {r['quick_note']}"))
    blocks.append(
        (
            "small",
            f"Claims of the notes: {t[REPRODUCED]} reproduced, {t[NOT_REPRODUCED]} not, "
            f"{t[INCONCLUSIVE]} inconclusive; beyond the notes: {t.get('beyond', 0)}; checks "
            f"{t['checks_passed']}/{t['checks']}; wall {r.get('wall_time_s', float('nan')):.1f} s.",
        )
    )
    if with_figures:
        blocks += [("img", f"{folder}{fig}", f"{r['name']}: {fig}") for fig in r.get("figures", [])]
    rows = [
        (c["kind"], c["claim"], (_CHECK_LABEL if c["kind"] == "check" else _LABEL)[c["verdict"]])
        for c in r["claims"]
    ]
    blocks.append(("table", ["kind", "statement", "verdict"], rows))
    return blocks


# -- rendering ------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["", "#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "small":
            lines += [f"<small>{b[1]}</small>", ""]
        elif kind == "quote":
            section = f" (「{b[3]}」)" if b[3] else ""
            lines += [f"> 「{b[1]}」{section}", ">", f"> *{b[2]}*", ""]
        elif kind == "entry":
            label = (_CHECK_LABEL if len(b) > 4 else _LABEL)[b[2]]
            lines += [f"- **{label}** — {b[1]} ([{b[3]}](#{b[3]}))", ""]
        elif kind == "list":
            lines += [f"  - {item}" for item in b[1]] + [""]
        elif kind == "links":  # headings' own anchors differ by renderer: the names only
            lines += [f"- {text}" for text, _ in b[1]] + [""]
        elif kind == "table":
            lines += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b[2]] + [""]
        elif kind == "img":
            lines += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(lines).strip() + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
line-height:1.45}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;
padding:3px 8px;font-size:14px;text-align:left;vertical-align:top}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}.v{font-weight:600;padding:1px 6px;
border-radius:4px}.reproduced{background:#d7f5dd}.not_reproduced{background:#fbd9d9}
.inconclusive{background:#fff1c2}blockquote{border-left:4px solid #9ab;margin:1.2em 0 .4em;
padding:.2em 1em;background:#f7f9fb}blockquote .en{color:#444;font-style:italic}
.entry{margin:.6em 0 .2em 1em}small,.small{color:#555;font-size:13px}ul{margin:.2em 0 .6em}
nav a{margin-right:1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return f"<p class='small'>(figure {_e(path.name)} missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _html_block(b: tuple, root: Path) -> str:
    kind = b[0]
    if kind in ("h1", "h2", "h3"):
        anchor = f' id="{_e(b[2])}"' if len(b) > 2 else ""
        return f"<{kind}{anchor}>{_e(b[1])}</{kind}>"
    if kind == "p":
        return f"<p>{_e(b[1])}</p>"
    if kind == "small":
        return f"<p class='small'>{_e(b[1])}</p>"
    if kind == "quote":
        section = f" <span class='small'>(「{_e(b[3])}」)</span>" if b[3] else ""
        return (
            f"<blockquote><div>「{_e(b[1])}」{section}</div>"
            f"<div class='en'>{_e(b[2])}</div></blockquote>"
        )
    if kind == "entry":
        label = (_CHECK_LABEL if len(b) > 4 else _LABEL)[b[2]]
        return (
            f"<p class='entry'><span class='v {b[2]}'>{label}</span> {_e(b[1])} "
            f"<a class='small' href='#{_e(b[3])}'>{_e(b[3])}</a></p>"
        )
    if kind == "list":
        return "<ul class='small'>" + "".join(f"<li>{_e(i)}</li>" for i in b[1]) + "</ul>"
    if kind == "links":
        items = "".join(f"<li><a href='#{_e(a)}'>{_e(t)}</a></li>" for t, a in b[1])
        return f"<nav><ul>{items}</ul></nav>"
    if kind == "table":
        head = "".join(f"<th>{_e(c)}</th>" for c in b[1])
        body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in b[2])
        return f"<table><tr>{head}</tr>{body}</table>"
    if kind == "img":
        return _img(root / b[1], b[2])
    raise ValueError(f"unknown report block {kind!r}")


def _html(blocks: list[tuple], root: Path, title: str) -> str:
    body = "\n".join(_html_block(b, root) for b in blocks)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


# -- the reports --------------------------------------------------------------------------------


def tally_line(claims: list[dict]) -> str:
    """The headline: claims of the notes only; beyond the notes and checks counted apart."""
    t = tally(claims)
    return (
        f"claims of the notes: {t[REPRODUCED]} reproduced, {t[NOT_REPRODUCED]} not reproduced, "
        f"{t[INCONCLUSIVE]} inconclusive (of {t['claims']}); beyond the notes: "
        f"{t['beyond_reproduced']} of {t['beyond']} reproduced; checks: {t['checks_passed']} of "
        f"{t['checks']} passed"
    )


def _header_text(header: dict) -> str:
    v = ", ".join(f"{k} {val}" for k, val in header.get("versions", {}).items())
    return f"Run {header.get('date', '?')} on {header.get('machine', '?')}; {v}."


_ABOUT = (
    "A claim is a statement of the notes that could come out false; it is decided from the 95% "
    "interval of its measured quantity against a threshold stated before the run. Comparisons "
    "of optimizers, schedules or models are made at each arm's own rate chosen on validation "
    "data, and the source's own settings are reported beside. Statements from outside the notes "
    "and checks of the library's math are shown and counted apart."
)


def _load_notes() -> list | None:
    """The map of the notes, where it is present and valid (the report says when it is not)."""
    try:
        from jaxopt_notes.experiments import _notes
    except ImportError:
        return None
    return _notes.load_map()


def coverage_line(t: dict) -> str:
    """One line of the map's coverage: testable sentences, how many were tested, verdicts."""
    v = t["verdicts"]
    return (
        f"Coverage of the notes: {t['sentences']} sentences mapped, {t['testable']} testable "
        f"here; {t['tested']} tested by claims ({v[REPRODUCED]} reproduced, "
        f"{v[NOT_REPRODUCED]} not reproduced, {v[INCONCLUSIVE]} inconclusive), "
        f"{t['confirmed_by_checks']} confirmed by checks of the math"
        + (f" ({t['checks_failed']} failed)" if t["checks_failed"] else "")
        + f", {t['untested']} not tested yet (each with its reason)"
    )


def coverage(results: list[dict]) -> dict | None:
    """The map's coverage of ``results`` (None where there is no map)."""
    notes = _load_notes()
    if not notes:
        return None
    from jaxopt_notes.experiments import _notes

    return _notes.coverage(notes, results)


def _coverage_blocks(results: list[dict], notes: list | None) -> list[tuple]:
    if not notes:
        return [("small", "No map of the notes was found: claims are listed by source only.")]
    from jaxopt_notes.experiments import _notes

    cov = _notes.coverage(notes, results)
    blocks = [("p", coverage_line(cov["total"]) + ".")]
    if cov["unknown_ids"]:
        blocks.append(
            ("small", "Named in the map but not in this run: " + ", ".join(cov["unknown_ids"]))
        )
    return blocks


def write_experiment_report(out_dir: Path, result: dict) -> Path:
    """``out_dir/REPORT.md`` and ``REPORT.html`` for one experiment (figures beside them)."""
    blocks: list[tuple] = [
        ("h1", result["name"]),
        ("small", _header_text(result.get("header", {}))),
    ]
    blocks.append(("p", tally_line(result["claims"]) + "."))
    blocks += _book_blocks([result], None)
    blocks += _index_blocks(result, "", with_figures=not any(b[0] == "img" for b in blocks))
    for b in blocks:  # one experiment: its figures are beside the report, not in a subfolder
        if b[0] == "img":
            blocks[blocks.index(b)] = ("img", b[1].removeprefix(f"{result['name']}/"), b[2])
    path = out_dir / "REPORT.md"
    path.write_text(_md(blocks), encoding="utf-8")
    (out_dir / "REPORT.html").write_text(_html(blocks, out_dir, result["name"]), encoding="utf-8")
    return path


def write_report(out: Path, results: list[dict], title: str = "The notes, tested") -> Path:
    """``out/REPORT.md`` and ``out/REPORT.html`` over all experiments; returns the first."""
    claims = [c for r in results for c in r["claims"]]
    header = results[0].get("header", {}) if results else {}
    notes = _load_notes()
    blocks: list[tuple] = [("h1", title), ("p", tally_line(claims) + ".")]
    blocks += _coverage_blocks(results, notes)
    blocks += [("p", _ABOUT), ("small", _header_text(header))]
    chapters = [(n.title, n.file) for n in notes or []]
    chapters += [("Beyond the notes", "beyond"), ("Checks of the library's math", "checks")]
    blocks.append(("links", [*chapters, ("Index of experiments", "index")]))
    blocks += _book_blocks(results, notes)
    blocks.append(("h2", "Index of experiments", "index"))
    for r in results:
        blocks += _index_blocks(r, f"{r['name']}/", with_figures=False)
    path = out / "REPORT.md"
    path.write_text(_md(blocks), encoding="utf-8")
    (out / "REPORT.html").write_text(_html(blocks, out, title), encoding="utf-8")
    return path
