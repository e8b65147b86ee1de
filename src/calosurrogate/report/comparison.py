"""Several surrogates judged against one reference, side by side: what each is, what its training
cost, what it reaches. The main job uses it to set the model it trains in a few minutes beside the
shipped model trained for an hour, so that a first run shows what training time buys.

An entry is a plain dict (JSON-able, kept in the evaluation's provenance under ``"compared"``):
``label``, ``what`` (one sentence), ``training`` (e.g. "5 min on this machine"),
``training_minutes``, ``ms_per_shower`` (None when not timed), ``report`` (a link, relative to the
report that shows the table) and the headline numbers :func:`headline` takes from an evaluation's
``metrics.json``.
"""

from __future__ import annotations

import html
from typing import Any

COLUMNS = ("model", "what it is", "training", "sampling", "showers judged", "verdict", "AUC high", "FPD x 1e3",
           "CFD voxel")  # fmt: skip


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers a comparison shows, from an evaluation's ``metrics.json`` content: the verdict's
    word, the showers judged, the high-level classifier AUC, FPD x 1e3 and the voxel CFD (None where
    the evaluation did not compute one)."""
    scalars = metrics.get("scalars", {})
    classifier = metrics.get("classifiers", {}).get("cls-high", {})
    return {
        "verdict": metrics.get("verdict", {}).get("word"),
        "showers": metrics.get("n_showers", {}).get("generated"),
        "auc_high": classifier.get("auc"),
        "fpd_x1e3": scalars.get("FPD x 1e3", {}).get("value"),
        "cfd_voxel": scalars.get("CFD voxel", {}).get("value"),
    }


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def _cells(entry: dict[str, Any]) -> list[str]:
    ms = entry.get("ms_per_shower")
    return [
        entry["label"], entry["what"], entry["training"], "not timed (reused)" if ms is None else f"{ms:.3g} ms / shower",
        f"{entry['showers']:,}" if entry.get("showers") else "n/a", entry.get("verdict") or "n/a",
        _number(entry.get("auc_high")), _number(entry.get("fpd_x1e3")), _number(entry.get("cfd_voxel")),
    ]  # fmt: skip


def what_training_buys(entries: list[dict[str, Any]]) -> str:
    """One sentence per entry after the first: its training time and sampling cost against the
    first's, and the AUC and FPD that come with them. Empty for fewer than two entries."""
    if len(entries) < 2:
        return ""
    first, sentences = entries[0], []
    for other in entries[1:]:
        minutes = f"{other['training_minutes']:g} minutes of training instead of {first['training_minutes']:g}"
        quality = (f"take the high-level classifier AUC from {_number(first.get('auc_high'))} to "
                   f"{_number(other.get('auc_high'))} (0.5: not told apart) and FPD x 1e3 from "
                   f"{_number(first.get('fpd_x1e3'))} to {_number(other.get('fpd_x1e3'))}")  # fmt: skip
        cost = ""
        if first.get("ms_per_shower") and other.get("ms_per_shower"):
            ratio = other["ms_per_shower"] / first["ms_per_shower"]
            cost = f", at {ratio:.3g} times the sampling time per shower"
        sentences.append(f"{other['label']}: {minutes} {quality}{cost}.")
    return " ".join(sentences)


def markdown_table(entries: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table followed by :func:`what_training_buys`."""
    if not entries:
        return ""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(e)) + " |" for e in entries]
    return "\n".join(lines) + "\n\n" + what_training_buys(entries) + "\n"


def html_section(entries: list[dict[str, Any]]) -> str:
    """The comparison as an HTML section (a table whose model names link to their reports)."""
    if not entries:
        return ""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    rows = []
    for entry in entries:
        cells = [esc(c) for c in _cells(entry)]
        if entry.get("report"):
            cells[0] = f'<a href="{esc(entry["report"])}">{cells[0]}</a>'
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<h2>Beside other surrogates</h2><table id="compared"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table><p>{esc(what_training_buys(entries))}</p>")  # fmt: skip
