"""The report of a crystal-calorimeter evaluation (ParaFlow's set-up): metrics.json, summary.md,
the plots and one self-contained report.html, written as a whole folder or not at all."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from calosurrogate._io import atomic_folder
from calosurrogate.plotting.crystal import (
    SHAPE_LABELS,
    figure_average_image,
    figure_shape_grids,
    figure_shape_histograms,
    figure_sliced_separation,
)
from calosurrogate.report.writer import CSS, _holds_evaluation, _save, check_evaluation_folder

FIGURES = (
    ("shapes.png", "Shower shapes, reference (grey) against generated, with ratio panels; S is the inclusive "
                   "separation power.", figure_shape_histograms),
    ("shape_grids.png", "Mean of each shape in each cell of the (d, b) grid: generated / reference - 1; the floor "
                        "is the same figure between two halves of the reference.", figure_shape_grids),
    ("average_image.png", "The average image of each sample and their relative difference; the central 4 x 4 "
                          "crystals outlined.", figure_average_image),
    ("separation_slices.png", "Separation power of each shape inclusively and per slice of d and b (points), "
                              "beside its floor (grey bars).", figure_sliced_separation),
)  # fmt: skip


def _rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for name, s in result["separation"]["all"].items():
        grid = result["mean_shape_grid"][name]
        rows.append((SHAPE_LABELS.get(name, name), f"{s['value']:.2e} ± {s['error']:.1e} (floor {s['floor']:.2e})",
                     f"{grid['largest_relative_difference']:.1%} (floor {grid['floor']:.1%})"))  # fmt: skip
    return rows


def crystal_summary(result: dict[str, Any]) -> str:
    """The markdown summary: each shape's separation power and largest (d, b)-grid difference."""
    image = result["average_image"]
    lines = [f"# Crystal evaluation: {result['generated']} against {result['reference']}", "",
             f"{result['showers']['reference']} reference and {result['showers']['generated']} generated showers.", "",
             "| shape | separation power (inclusive) | largest mean difference over the (d, b) grid |",
             "|---|---|---|"]  # fmt: skip
    lines += [f"| {a} | {b} | {c} |" for a, b, c in _rows(result)]
    lines += ["", f"Central 4 x 4 crystals of the average image within {image['central_4x4_largest_relative_difference']:.1%} "
              f"(floor {image['central_4x4_floor']:.1%}).", ""]  # fmt: skip
    return "\n".join(lines)


def _html(result: dict[str, Any], figures: list[tuple[str, str, bytes]]) -> str:
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(a)}</td><td class='num'>{esc(b)}</td><td class='num'>{esc(c)}</td></tr>"
                   for a, b, c in _rows(result))  # fmt: skip
    figs = "".join(f'<figure><img alt="{esc(n)}" src="data:image/png;base64,{base64.b64encode(d).decode()}">'
                   f"<figcaption>{esc(c)}</figcaption></figure>" for n, c, d in figures)  # fmt: skip
    image = result["average_image"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>calosurrogate crystal evaluation</title><style>{CSS}</style></head><body>
<header><h1>Crystal-calorimeter evaluation (ParaFlow set-up)</h1>
<p>reference <code>{esc(result["reference"])}</code> vs generated <code>{esc(result["generated"])}</code>,
{result["showers"]["reference"]} and {result["showers"]["generated"]} showers</p></header>
<main>
<p>Floors compare two halves of the reference: what a perfect generator would score (an upper estimate, the halves
being half as large). Central 4 x 4 crystals of the average image within
{image["central_4x4_largest_relative_difference"]:.1%} (floor {image["central_4x4_floor"]:.1%}).</p>
<table><thead><tr><th>shape</th><th>separation power</th><th>largest (d, b)-grid difference</th></tr></thead>
<tbody>{rows}</tbody></table>
{figs}
</main></body></html>
"""


def write_crystal_report(
    result: dict[str, Any], out_dir: str | os.PathLike[str], force: bool = False
) -> dict[str, Path]:
    """Write ``metrics.json``, ``summary.md``, the plots and ``report.html`` as the folder ``out_dir``
    (whole or not at all; a former evaluation replaced only with ``force``)."""
    out = Path(out_dir)
    check_evaluation_folder(out, force)
    written: dict[str, Path] = {}
    with atomic_folder(out, force, replaceable=_holds_evaluation, what="an evaluation") as stage:
        rendered = []
        for name, caption, build in FIGURES:
            _save(build(result), stage / name)
            rendered.append((name, caption, (stage / name).read_bytes()))
            written[name] = out / name
        texts = {"metrics.json": json.dumps(result, indent=1, allow_nan=True) + "\n",
                 "summary.md": crystal_summary(result), "report.html": _html(result, rendered)}  # fmt: skip
        for name, text in texts.items():
            (stage / name).write_text(text)
            written[name] = out / name
    return written


__all__ = ["crystal_summary", "write_crystal_report"]
