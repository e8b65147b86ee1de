"""The report of a point-cloud evaluation (CaloClouds' observables): metrics.json, summary.md, the
histograms with ratio panels and one self-contained report.html, written whole or not at all."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

from calosurrogate._io import atomic_folder
from calosurrogate.evaluation.points import LABELS, PointEvaluation
from calosurrogate.plotting.figures import figure_layer_grid
from calosurrogate.report.writer import CSS, _holds_evaluation, _save, check_evaluation_folder

ANGLE_NAMES = {"all": "PCA of all hits", "top": "PCA of the most energetic hits"}


def _rows(result: PointEvaluation) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, j in result.jsd.items():
        verdict = "at its floor" if j["value"] <= j["floor"] + 2 * max(j["error"], j["floor_error"]) else "above"
        rows.append((LABELS[name], f"{j['value']:.4f} ± {j['error']:.4f}", f"{j['floor']:.4f}", verdict))
    return rows


def point_summary(result: PointEvaluation, reference: str, generated: str) -> str:
    """The markdown summary: each observable's Jensen-Shannon distance beside its floor, and the angles."""
    s = result.settings
    lines = [f"# Point-cloud evaluation: {generated} against {reference}", "",
             f"{s['n_each']} generated showers against {s['n_each']} reference showers (half A of {s['n_pairs']}), "
             f"projected onto {s['cell_mm']:g} mm cells and cut at {s['cut_mev']:.3f} MeV (half a MIP).", "",
             "| observable | Jensen-Shannon distance | floor (reference half vs half) | |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _rows(result)]
    lines += ["", "| shower direction | separation power of the angular errors | floor | median error ref / gen |",
              "|---|---|---|---|"]  # fmt: skip
    for variant, a in result.angles.items():
        lines.append(f"| {ANGLE_NAMES[variant]} | {a['value']:.4f} ± {a['error']:.4f} | {a['floor']:.4f} | "
                     f"{a['median_reference_deg']:.2f} / {a['median_generated_deg']:.2f} deg |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_point_report(result: PointEvaluation, reference: str, generated: str, out_dir: str | os.PathLike[str],
                       force: bool = False) -> dict[str, Path]:  # fmt: skip
    """Write ``metrics.json``, ``summary.md``, ``observables.png`` and ``report.html`` as the folder
    ``out_dir`` (whole or not at all; a former evaluation replaced only with ``force``)."""
    out = Path(out_dir)
    check_evaluation_folder(out, force)
    summary = point_summary(result, reference, generated)
    with atomic_folder(out, force, replaceable=_holds_evaluation, what="an evaluation") as stage:
        figure = figure_layer_grid(result.pairs, [result.jsd[p.key]["value"] for p in result.pairs],
                                   "Reference half A (grey) against generated showers", statistic="JSD")  # fmt: skip
        _save(figure, stage / "observables.png")
        image = base64.b64encode((stage / "observables.png").read_bytes()).decode()
        esc = html.escape
        rows = "".join(f"<tr><td>{esc(a)}</td><td class='num'>{esc(b)}</td><td class='num'>{esc(c)}</td>"
                       f"<td>{esc(d)}</td></tr>" for a, b, c, d in _rows(result))  # fmt: skip
        angle_rows = "".join(f"<tr><td>{ANGLE_NAMES[v]}</td><td class='num'>{a['value']:.4f} ± {a['error']:.4f}</td>"
                             f"<td class='num'>{a['floor']:.4f}</td><td class='num'>{a['median_reference_deg']:.2f} / "
                             f"{a['median_generated_deg']:.2f}</td></tr>" for v, a in result.angles.items())  # fmt: skip
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>calosurrogate point-cloud evaluation</title><style>{CSS}</style></head><body>
<header><h1>Point-cloud evaluation ({esc(result.settings["geometry"])})</h1>
<p>reference <code>{esc(reference)}</code> vs generated <code>{esc(generated)}</code></p></header>
<main>
<p>Floors compare two halves of the reference with the same numbers of showers on the same bins: what a perfect
generator would score.</p>
<table><thead><tr><th>observable</th><th>Jensen-Shannon distance</th><th>floor</th><th></th></tr></thead>
<tbody>{rows}</tbody></table>
<table><thead><tr><th>shower direction</th><th>separation power of the angular errors</th><th>floor</th>
<th>median error ref / gen (degrees)</th></tr></thead><tbody>{angle_rows}</tbody></table>
<figure><img alt="observables" src="data:image/png;base64,{image}"><figcaption>Each observable, with its ratio
panel; JSD is its Jensen-Shannon distance.</figcaption></figure>
</main></body></html>
"""  # fmt: skip
        texts = {"metrics.json": json.dumps(result.to_dict(), indent=1) + "\n", "summary.md": summary,
                 "report.html": page}  # fmt: skip
        for name, text in texts.items():
            (stage / name).write_text(text)
    return {name: out / name for name in ("metrics.json", "summary.md", "observables.png", "report.html")}


__all__ = ["point_summary", "write_point_report"]
