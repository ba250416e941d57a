"""REPORT.md and REPORT.html: per experiment its settings, figures, and per claim its source,
stated test, measured table with intervals, verdict and reason; checks in a table of their own.

Both formats are rendered from the same ``result.json`` contents; the HTML embeds its figures,
so it is one self-contained file.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from jaxopt_notes.experiments._claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, tally

_PACKAGES = ("jax", "jaxlib", "optax", "flax", "numpy", "scipy", "matplotlib")


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


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _is_estimate(v: Any) -> bool:
    return isinstance(v, dict) and {"value", "ci_low", "ci_high", "n"} <= set(v)


def _rows(evidence: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, str, str, str]]:
    """(quantity, value, 95% CI, n) rows of a claim's evidence, nested dicts flattened."""
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


_LABEL = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not reproduced", INCONCLUSIVE: "inconclusive"}


def tally_line(claims: list[dict]) -> str:
    t = tally(claims)
    return (
        f"claims: {t[REPRODUCED]} reproduced, {t[NOT_REPRODUCED]} not reproduced, "
        f"{t[INCONCLUSIVE]} inconclusive (of {t['claims']}); "
        f"checks: {t['checks_passed']} of {t['checks']} passed"
    )


def _source_md(s: dict) -> str:
    text = f"`{s['note']}`, section 「{s['section']}」: 「{s['quote']}」 — *{s['english']}*"
    if s.get("reference"):
        text += f" Reference: {s['reference']}."
    return text


def _settings_md(r: dict) -> list[str]:
    changed = r.get("changed_from_default", {})
    cells = [
        f"`{k}={fmt(v)}`" + (f" (default {fmt(changed[k]['default'])})" if k in changed else "")
        for k, v in r["config"].items()
    ]
    lines = ["**Settings:** " + ", ".join(cells) + "."]
    mode = {True: "quick", "tiny": "tiny (tests)", False: "full (the source's settings)"}
    lines.append(f"**Mode:** {mode.get(r.get('quick'), r.get('quick'))}.")
    if changed and r.get("quick"):
        lines.append(
            "**What the smaller budget changed:** "
            + ", ".join(f"`{k}` {fmt(v['default'])} → {fmt(v['used'])}" for k, v in changed.items())
            + "."
            + (f" {r['quick_note']}" if r.get("quick_note") else "")
        )
    return lines


def _experiment_md(r: dict, fig_prefix: str, level: str = "##") -> list[str]:
    t = r.get("tally") or tally(r["claims"])
    lines = ["", f"{level} {r['name']}", "", r.get("summary", ""), ""]
    lines.append(f"**Data:** {r.get('data', 'not stated')}.")
    lines += _settings_md(r)
    lines.append(
        f"**Tally:** {t[REPRODUCED]} reproduced, {t[NOT_REPRODUCED]} not reproduced, "
        f"{t[INCONCLUSIVE]} inconclusive; checks {t['checks_passed']}/{t['checks']}. "
        f"Wall time {r.get('wall_time_s', float('nan')):.1f} s."
    )
    lines.append("")
    for fig in r.get("figures", []):
        lines.append(f"![{r['name']}: {fig}]({fig_prefix}{fig})")
    real = [c for c in r["claims"] if c["kind"] == "claim"]
    for i, c in enumerate(real, 1):
        lines += ["", f"**Claim {i}.** {c['claim']} — **{_LABEL[c['verdict']]}**", ""]
        lines.append(f"- Source: {_source_md(c['source'])}")
        for test in c["test"]["parts"]:
            lines.append(f"- Test: {test['statement']}")
        lines.append(f"- Verdict: **{_LABEL[c['verdict']]}** because {c['reason']}.")
        lines += ["", "| measured | value | 95% CI | n |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(a)} | {_cell(b)} | {ci} | {n} |" for a, b, ci, n in _rows(c["evidence"])
        ]
    checks = [c for c in r["claims"] if c["kind"] == "check"]
    if checks:
        lines += ["", "Checks of the library's math (not counted as claims):", ""]
        lines += ["| check | result | evidence |", "|---|---|---|"]
        for c in checks:
            ok = "pass" if c["verdict"] == REPRODUCED else f"**fail** ({c['reason']})"
            ev = "; ".join(f"{a} = {b}" for a, b, _, _ in _rows(c["evidence"]))
            lines.append(f"| {_cell(c['claim'])} | {_cell(ok)} | {_cell(ev[:300])} |")
    return lines


def _header_md(header: dict) -> str:
    v = ", ".join(f"{k} {val}" for k, val in header.get("versions", {}).items())
    return f"Run {header.get('date', '?')} on {header.get('machine', '?')}; {v}."


def write_experiment_report(out_dir: Path, result: dict) -> Path:
    """``out_dir/REPORT.md`` for one experiment (figures beside it)."""
    lines = [f"# {result['name']}", "", _header_md(result.get("header", {}))]
    lines += [tally_line(result["claims"])]
    lines += _experiment_md(result, "", level="##")[2:]
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_report(out: Path, results: list[dict], title: str = "jaxopt_notes experiments") -> Path:
    """``out/REPORT.md`` and ``out/REPORT.html`` over all experiments; returns the first."""
    claims = [c for r in results for c in r["claims"]]
    header = results[0].get("header", {}) if results else {}
    lines = [f"# {title}", "", tally_line(claims) + ".", ""]
    lines.append(
        "A claim is a statement of the notes that could come out false; it is decided from the "
        "95% interval of its measured quantity against a threshold stated before the run. A "
        "check confirms the library's math and is not counted as a claim."
    )
    lines += ["", _header_md(header), ""]
    lines += [
        "| experiment | data | reproduced | not | inconclusive | checks | wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r.get("tally") or tally(r["claims"])
        lines.append(
            f"| [{r['name']}](#{r['name']}) | {_cell(r.get('data', ''))} | {t[REPRODUCED]} | "
            f"{t[NOT_REPRODUCED]} | {t[INCONCLUSIVE]} | {t['checks_passed']}/{t['checks']} | "
            f"{r.get('wall_time_s', float('nan')):.1f} |"
        )
    for r in results:
        lines += _experiment_md(r, f"{r['name']}/")
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_html(out, results, title)
    return path


# -- HTML -----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:14px;text-align:left;vertical-align:top}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}.v{font-weight:600;padding:1px 6px;
border-radius:4px}.reproduced{background:#d7f5dd}.not_reproduced{background:#fbd9d9}
.inconclusive{background:#fff1c2}.claim{border-left:4px solid #ddd;padding:.2em 1em;margin:1em 0}
.src{color:#444;font-size:14px}.small{color:#555;font-size:13px}code{background:#f6f6f6}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _badge(verdict: str) -> str:
    return f'<span class="v {verdict}">{_LABEL[verdict]}</span>'


def _img(path: Path) -> str:
    if not path.exists():
        return f"<p>(figure {_e(path.name)} missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(path.name)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[tuple]) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _experiment_html(r: dict, folder: Path) -> str:
    t = r.get("tally") or tally(r["claims"])
    parts = [f'<h2 id="{_e(r["name"])}">{_e(r["name"])}</h2>', f"<p>{_e(r.get('summary', ''))}</p>"]
    parts.append(f"<p><b>Data:</b> {_e(r.get('data', 'not stated'))}.</p>")
    changed = r.get("changed_from_default", {})
    cfg_rows = [
        (
            f"<code>{_e(k)}</code>",
            _e(fmt(v)),
            _e(fmt(changed[k]["default"])) if k in changed else "",
        )
        for k, v in r["config"].items()
    ]
    parts.append("<details><summary>Settings (" + str(len(cfg_rows)) + " fields)</summary>")
    parts.append(_table(["field", "used", "default, where different"], cfg_rows) + "</details>")
    if changed and r.get("quick"):
        note = f" {_e(r['quick_note'])}" if r.get("quick_note") else ""
        what = ", ".join(
            f"<code>{_e(k)}</code> {_e(fmt(v['default']))} → {_e(fmt(v['used']))}"
            for k, v in changed.items()
        )
        parts.append(f"<p class='small'><b>What the smaller budget changed:</b> {what}.{note}</p>")
    parts.append(
        f"<p class='small'>{t[REPRODUCED]} reproduced, {t[NOT_REPRODUCED]} not reproduced, "
        f"{t[INCONCLUSIVE]} inconclusive; checks {t['checks_passed']}/{t['checks']}; wall "
        f"{r.get('wall_time_s', float('nan')):.1f} s.</p>"
    )
    parts += [_img(folder / fig) for fig in r.get("figures", [])]
    for i, c in enumerate([c for c in r["claims"] if c["kind"] == "claim"], 1):
        s = c["source"]
        ref = f" Reference: {_e(s['reference'])}." if s.get("reference") else ""
        tests = "".join(f"<li>Test: {_e(x['statement'])}</li>" for x in c["test"]["parts"])
        rows = [tuple(_e(x) for x in row) for row in _rows(c["evidence"])]
        parts.append(
            f"<div class='claim'><p><b>Claim {i}.</b> {_e(c['claim'])} {_badge(c['verdict'])}</p>"
            f"<ul class='src'><li>Source: <code>{_e(s['note'])}</code>, 「{_e(s['section'])}」: "
            f"「{_e(s['quote'])}」 — <i>{_e(s['english'])}</i>{ref}</li>{tests}"
            f"<li>Reason: {_e(c['reason'])}.</li></ul>"
            + _table(["measured", "value", "95% CI", "n"], rows)
            + "</div>"
        )
    checks = [c for c in r["claims"] if c["kind"] == "check"]
    if checks:
        rows = [
            (
                _e(c["claim"]),
                "pass" if c["verdict"] == REPRODUCED else f"<b>fail</b> ({_e(c['reason'])})",
                _e("; ".join(f"{a} = {b}" for a, b, _, _ in _rows(c["evidence"]))[:300]),
            )
            for c in checks
        ]
        parts.append("<p>Checks of the library's math (not counted as claims):</p>")
        parts.append(_table(["check", "result", "evidence"], rows))
    return "\n".join(parts)


def write_html(out: Path, results: list[dict], title: str) -> Path:
    claims = [c for r in results for c in r["claims"]]
    header = results[0].get("header", {}) if results else {}
    rows = []
    for r in results:
        t = r.get("tally") or tally(r["claims"])
        rows.append(
            (
                f'<a href="#{_e(r["name"])}">{_e(r["name"])}</a>',
                str(t[REPRODUCED]),
                str(t[NOT_REPRODUCED]),
                str(t[INCONCLUSIVE]),
                f"{t['checks_passed']}/{t['checks']}",
                f"{r.get('wall_time_s', float('nan')):.1f}",
            )
        )
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p><b>{_e(tally_line(claims))}.</b></p>",
        "<p class='small'>A claim is a statement of the notes that could come out false; it is "
        "decided from the 95% interval of its measured quantity against a threshold stated "
        "before the run. A check confirms the library's math and is not counted.</p>",
        f"<p class='small'>{_e(_header_md(header))}</p>",
        _table(["experiment", "reproduced", "not", "inconclusive", "checks", "wall (s)"], rows),
    ]
    body += [_experiment_html(r, out / r["name"]) for r in results]
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>"
    )
    path = out / "REPORT.html"
    path.write_text(page, encoding="utf-8")
    return path
