"""Write an evaluation to a folder: numbers, summary, plots and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from calosurrogate._io import OutputExistsError, atomic_folder
from calosurrogate.evaluation import EvaluationResult
from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.plotting import (
    figure_cfd_maps,
    figure_histogram,
    figure_layer_correlations,
    figure_layer_grid,
    figure_mean_showers,
    figure_profiles,
    figure_response,
    figure_separation_overview,
)
from calosurrogate.report.comparison import html_section, markdown_table
from calosurrogate.report.verdict import verdict

PER_LAYER_KINDS = {
    "E_layer": "Energy per layer",
    "EC_eta": "Centre of energy in eta",
    "EC_phi": "Centre of energy in phi",
    "width_eta": "Shower width in eta",
    "width_phi": "Shower width in phi",
    "EC_r": "Centre of energy in r",
    "width_r": "Shower width in r",
    "sparsity": "Sparsity (fraction of zero voxels)",
}
MAX_GRID_LAYERS = 9


def _fmt(value: float, error: float | None = None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    digits = 4 if abs(value) < 10 else 2
    text = f"{value:.{digits}f}"
    return text + (f" ± {error:.{digits}f}" if error is not None else "")


def _save(fig: Figure, path: Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, format="png", dpi=dpi)
    plt.close(fig)


_RENDER_JOBS: list[tuple[Callable[[], Figure], Path]] = []


def _render_one(index: int) -> None:
    build, path = _RENDER_JOBS[index]
    _save(build(), path, dpi=80)


def _render_all(jobs: list[tuple[Callable[[], Figure], Path]]) -> None:
    """Draw the per-layer figures into their files, on every core where the platform forks.

    Drawing is pure Python (matplotlib), so threads would not help; forked processes inherit the
    figures' data without pickling it. Any failure of the pool falls back to drawing them here.
    """
    global _RENDER_JOBS
    import multiprocessing

    workers = min(os.cpu_count() or 1, 4)
    if workers > 1 and len(jobs) > 8 and "fork" in multiprocessing.get_all_start_methods():
        _RENDER_JOBS = jobs
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                pool.map_async(_render_one, range(len(jobs))).get(timeout=900)
            if all(path.exists() for _, path in jobs):
                return
        except Exception:  # a pool that fails costs time, never the report
            pass
        finally:
            _RENDER_JOBS = []
    for build, path in jobs:
        _save(build(), path, dpi=80)


def _figures(
    result: EvaluationResult, geometry: CylindricalGeometry
) -> list[tuple[str, str, Callable[[], Figure | None]]]:
    """(file name, caption, builder) of every figure the report shows."""
    by_key = {p.key: p for p in result.histograms}
    sep = result.separation

    def s_of(key: str) -> float | None:
        return sep[key]["value"] if key in sep else None

    figures: list[tuple[str, str, Callable[[], Figure | None]]] = []
    if "E_tot/E_inc" in by_key:
        figures.append(
            (
                "etot_einc.png",
                "Total energy over incident energy.",
                lambda: figure_histogram(by_key["E_tot/E_inc"], s_of("E_tot/E_inc")),
            )
        )
    if result.response:
        figures.append(
            (
                "response.png",
                "Response and resolution against the incident energy, generated / reference below (statistical errors).",
                lambda: figure_response(result.response),
            )
        )
    per_energy = [k for k in by_key if k.startswith("E_tot/E_inc@")]
    if per_energy:
        figures.append(("etot_einc_per_energy.png", "E_tot / E_inc in bins of incident energy (each discrete energy of dataset 1).",
                        lambda: figure_layer_grid([by_key[k] for k in per_energy], [s_of(k) for k in per_energy],
                                                  "E_tot / E_inc per incident energy", columns=min(5, len(per_energy)))))  # fmt: skip
    if "voxel_energy" in by_key:
        figures.append(
            (
                "voxel_energy.png",
                "Voxel energy spectrum, all voxels pooled (after the threshold).",
                lambda: figure_histogram(by_key["voxel_energy"], s_of("voxel_energy")),
            )
        )
    if sep:
        figures.append(
            (
                "separation_overview.png",
                "Separation power of every per-layer observable; dashed lines are the reference-half vs reference-half floors.",
                lambda: figure_separation_overview(sep, geometry),
            )
        )
    figures.append(
        (
            "profiles.png",
            "Mean longitudinal and radial profiles, with generated / reference below (error bars and the grey band: standard errors of the means).",
            lambda: figure_profiles(
                geometry,
                result.mean_layer_energy["reference"],
                result.mean_layer_energy["generated"],
                result.mean_showers["reference"],
                result.mean_showers["generated"],
                result.mean_layer_energy_error.get("reference"),
                result.mean_layer_energy_error.get("generated"),
                result.radial_profile,
            ),
        )
    )
    figures.append(
        (
            "mean_showers.png",
            "Mean shower images across the shower's depth: reference, generated, and their relative difference (blue: the generated sample has less energy there, red: more).",
            lambda: figure_mean_showers(geometry, result.mean_showers["reference"], result.mean_showers["generated"]),
        )
    )
    if "layer" in result.correlation_maps:
        maps = result.correlation_maps["layer"]
        figures.append(
            (
                "layer_correlations.png",
                "Layer-energy correlation matrices and their difference (the CFD layer variant is the Frobenius norm of the difference).",
                lambda: figure_layer_correlations(maps["reference"], maps["generated"]),
            )
        )
    if {"voxel", "group"} & set(result.correlation_maps):
        figures.append(
            (
                "cfd_maps.png",
                "Where the correlations between consecutive layers differ (generated - reference).",
                lambda: figure_cfd_maps(result.correlation_maps),
            )
        )
    for kind, title in PER_LAYER_KINDS.items():
        keys = [k for k in by_key if k.startswith(kind + "/")]
        if not keys:
            continue
        if len(keys) > MAX_GRID_LAYERS:
            picks = np.unique(np.linspace(0, len(keys) - 1, MAX_GRID_LAYERS).round().astype(int))
            keys = [keys[i] for i in picks]
        figures.append((f"{kind}.png", f"{title}, layers across the depth (every layer: the layer selector below).",
                        lambda keys=keys, title=title: figure_layer_grid([by_key[k] for k in keys], [s_of(k) for k in keys], title)))  # fmt: skip
    return figures


def _layer_figures(
    result: EvaluationResult, geometry: CylindricalGeometry
) -> list[tuple[int, str, str, float, Callable[[], Figure]]]:
    """(layer id, file name, option label, largest separation power, builder) of one figure per layer holding every
    observable of that layer: the layer selector of the report reaches each of them."""
    by_key = {p.key: p for p in result.histograms}
    out = []
    for layer in geometry.layers:
        keys = [f"{kind}/{layer.layer_id}" for kind in PER_LAYER_KINDS if f"{kind}/{layer.layer_id}" in by_key]
        if not keys:
            continue
        seps = [result.separation[k]["value"] if k in result.separation else None for k in keys]
        worst = max((v for v in seps if v is not None), default=0.0)
        label = f"layer {layer.layer_id} (largest S {worst:.3f})"
        out.append((layer.layer_id, f"layers/layer_{layer.layer_id:02d}.png", label, worst,
                    lambda keys=keys, seps=seps, lid=layer.layer_id: figure_layer_grid(
                        [by_key[k] for k in keys], seps, f"Layer {lid}: every observable", columns=4)))  # fmt: skip
    return out


def _headline_rows(result: EvaluationResult) -> list[tuple[str, str, str, str]]:
    rows = []
    names = {
        "low": "classifier AUC, low-level",
        "low-normed": "classifier AUC, low-level normed",
        "high": "classifier AUC, high-level",
        "cnn": "classifier AUC, CNN on images",
    }
    for entry in result.classifiers.values():
        floor = _fmt(entry["floor"], entry.get("floor_std")) if "floor" in entry else "~0.5 (ideal)"
        rows.append(
            (
                names[entry["inputs"]],
                _fmt(entry["auc"], entry["auc_std"] if len(entry["runs"]) > 1 else None),
                floor,
                f"JSD {_fmt(entry['jsd'])}; {len(entry['runs'])} run(s)"
                + ("" if len(entry["runs"]) > 1 else ", no spread"),
            )
        )
    for name, entry in result.scalars.items():
        floor = _fmt(entry["floor"], entry.get("floor_error")) if "floor" in entry else "n/a"
        rows.append((name, _fmt(entry["value"], entry["error"]), floor, entry["settings"].get("error", "")))
    if "E_tot/E_inc" in result.separation:
        e = result.separation["E_tot/E_inc"]
        rows.append(
            (
                "separation power E_tot/E_inc",
                _fmt(e["value"], e["error"]),
                _fmt(e["floor"], e["floor_error"]) if "floor" in e else "n/a",
                "0 identical, 1 disjoint",
            )
        )
    return rows


def _per_class(classifier: dict[str, Any]) -> str:
    limit = classifier.get("max_per_class")
    return "all" if limit is None else f"at most {limit:,}"


def _input_precision(result: EvaluationResult) -> str:
    """A sentence where the low-level classifier inputs were held in bf16 to fit in memory (ds3)."""
    reduced = [k for k, v in result.classifiers.items() if v.get("settings", {}).get("input_dtype") == "bfloat16"]
    if not reduced:
        return ""
    return (f" The inputs of {', '.join(reduced)} were held in bf16 (8 bits of mantissa) to fit in memory, "
            "and read batch by batch in float32.")  # fmt: skip


def _verdict_note(judged: dict[str, Any]) -> str:
    t = judged["thresholds"]
    return (f"Thresholds: a classifier AUC is within its floor up to {t['auc_within']}, close up to {t['auc_close']}; "
            f"a metric with a floor is within it up to the floor plus {t['noise']}, close up to {t['close_factor']:g} "
            f"times the floor (PRDC: a shortfall, or for density a distance, of at most {t.get('prdc_close', 0.1):.0%} "
            f"of the floor); {judged['observables']['separable']} observables separable, "
            f"{judged['observables']['close']} close, {judged['observables']['within its floor']} within their floors.")  # fmt: skip


def _weighted_note(result: EvaluationResult) -> str:
    """Where the generated sample is weighted: its effective sample size, which the errors follow."""
    effective = result.n_showers.get("generated_effective")
    if effective is None:
        return ""
    return (f"; the generated showers weighted, effective sample size {effective:,.0f} "
            f"({effective / max(result.n_showers['generated'], 1):.0%} of the count)")  # fmt: skip


def _markdown(result: EvaluationResult, judged: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {result.geometry}", "", f"**Verdict: {judged['sentence']}**", "", _verdict_note(judged), "",
             f"Reference `{result.provenance['reference']['path']}` vs generated `{result.provenance['generated']['path']}`, "
             f"{result.n_showers['reference']} showers each{_weighted_note(result)}.", "",
             "| metric | value | floor (reference half vs half) | note |", "|---|---|---|---|"]  # fmt: skip
    compared = result.provenance.get("compared")
    if compared:
        lines[6:6] = ["## Beside other surrogates", "", markdown_table(compared)]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _headline_rows(result)]
    worst = sorted(result.separation.items(), key=lambda kv: -kv[1]["value"])[:10]
    if worst:
        lines += ["", "Largest separation powers:", "", "| observable | S | floor |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v['value'], v['error'])} | {_fmt(v.get('floor', float('nan')))} |" for k, v in worst]
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result.warnings]
    cls = result.settings["classifier"]
    lines += ["", f"Classifier settings: hidden {cls['hidden']}, {cls['epochs']} epochs, batch {cls['batch_size']}, "
              f"lr {cls['learning_rate']}, {cls['runs']} run(s), {_per_class(cls)} showers per class."
              f"{_input_precision(result)}"]  # fmt: skip
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{background:#20303c;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cfd8de;font-size:13px}main{padding:18px 28px;max-width:1300px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 18px}
.card{background:#fff;border-radius:8px;padding:12px 16px;min-width:180px;box-shadow:0 1px 3px #0002}
.card .v{font-size:22px;font-weight:600}.card .l{font-size:12px;color:#555}.card .f{font-size:12px;color:#777}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:8px 0 18px}
th,td{padding:5px 10px;border-bottom:1px solid #e3e3e3;text-align:left}th{background:#eef1f3}
td.num{font-variant-numeric:tabular-nums;text-align:right}
figure{display:inline-block;vertical-align:top;max-width:100%;box-sizing:border-box;background:#fff;border-radius:8px;padding:10px;margin:0 14px 18px 0;box-shadow:0 1px 3px #0002}
figure img{max-width:100%;display:block}figcaption{font-size:13px;color:#444;margin-top:6px;max-width:640px}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:8px 0}
.verdict{font-size:16px;padding:12px 16px;margin:10px 0 14px;border-radius:8px;border-left:6px solid}
.verdict .note{font-size:12px;color:#555;margin-top:6px}
.verdict.within-its-floor{background:#e9f6ec;border-color:#2e8b4e}.verdict.close{background:#fff7e0;border-color:#d9a400}
.verdict.separable{background:#fdecea;border-color:#c0392b}.verdict.not-judged{background:#eef1f6;border-color:#7a869a}
details{margin:8px 0 18px}summary{cursor:pointer;font-weight:600}code{font-size:12px}
"""

CHECK_SCRIPT = """
window.addEventListener('load',function(){var imgs=document.images,ok=0;
for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0){ok++;}}
document.body.setAttribute('data-images-loaded',ok+'/'+imgs.length);});
"""


LAYER_SCRIPT = """
function showLayer(id){var figs=document.querySelectorAll('#layer-figures figure');
for(var i=0;i<figs.length;i++){figs[i].style.display=(figs[i].getAttribute('data-layer')===id)?'inline-block':'none';}}
window.addEventListener('load',function(){var s=document.getElementById('layer-select');
if(s){s.addEventListener('change',function(){showLayer(s.value);});showLayer(s.value);}});
"""


def _layer_section(layers: list[tuple[int, str, float, bytes]]) -> str:
    """Every layer's figure behind one selector, the layer that separates most selected first."""
    if not layers:
        return ""
    esc = html.escape
    worst = max(layers, key=lambda item: item[2])[0]
    options = "".join(
        f'<option value="{lid}"{" selected" if lid == worst else ""}>{esc(label)}</option>'
        for lid, label, _, _ in layers
    )
    figures = "".join(
        f'<figure data-layer="{lid}" style="display:none"><img alt="layer {lid}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}"></figure>'
        for lid, _, _, data in layers
    )
    return (f'<h2>Every layer</h2><p><label>Layer: <select id="layer-select">{options}</select></label> '
            f"every observable of one layer, with its ratio panel; the layer that separates most is shown first.</p>"
            f'<div id="layer-figures">{figures}</div>')  # fmt: skip


def _html(
    result: EvaluationResult, figures: list[tuple[str, str, bytes]], judged: dict[str, Any],
    layers: list[tuple[int, str, float, bytes]] | None = None,
) -> str:  # fmt: skip
    esc = html.escape
    prov = result.provenance
    cards = []
    for name, value, floor, _ in _headline_rows(result)[:6]:
        cards.append(
            f'<div class="card"><div class="l">{esc(name)}</div><div class="v">{esc(value)}</div><div class="f">floor: {esc(floor)}</div></div>'
        )
    rows = "".join(
        f"<tr><td>{esc(a)}</td><td class='num'>{esc(b)}</td><td class='num'>{esc(c)}</td><td>{esc(d)}</td></tr>"
        for a, b, c, d in _headline_rows(result)
    )
    sep_rows = "".join(
        f"<tr><td>{esc(k)}</td><td class='num'>{_fmt(v['value'], v['error'])}</td><td class='num'>{_fmt(v.get('floor', float('nan')))}</td>"
        f"<td class='num'>{v['reference_outside']}</td><td class='num'>{v['generated_outside']}</td></tr>"
        for k, v in sorted(result.separation.items(), key=lambda kv: -kv[1]["value"])
    )
    figs = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for name, caption, data in figures
    )
    warns = "".join(f'<div class="warn">{esc(w)}</div>' for w in result.warnings)
    cls = result.settings["classifier"]
    settings_text = esc(json.dumps(result.settings, indent=1, default=str))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>calosurrogate evaluation: {esc(result.geometry)}</title>
<style>{CSS}</style><script>{CHECK_SCRIPT}{LAYER_SCRIPT}</script></head><body>
<header><h1>Shower evaluation: {esc(result.geometry)}</h1>
<p>reference <code>{esc(prov["reference"]["path"])}</code> vs generated <code>{esc(prov["generated"]["path"])}</code>,
{result.n_showers["reference"]} showers each{esc(_weighted_note(result))}; calosurrogate {esc(prov["versions"]["calosurrogate"])}</p></header>
<main>
<div class="verdict {judged["status"].replace(" ", "-")}" id="verdict"><b>Verdict: {esc(judged["word"])}.</b>
{esc(judged["sentence"].split(": ", 1)[1])}<div class="note">{esc(_verdict_note(judged))}</div></div>
<div class="cards">{"".join(cards)}</div>
{html_section(prov.get("compared") or [])}
{warns}
<h2>Metrics</h2>
<p>Floors compare the first half of the reference with its second half: what a perfect generator would score
(an upper estimate, as the halves are half as large). Classifier: hidden width {cls["hidden"]}, {cls["epochs"]} epochs,
{cls["runs"]} run(s), {_per_class(cls)} showers per class (the reference evaluation uses 2048 and 50 epochs).{esc(_input_precision(result))}</p>
<table id="metrics"><thead><tr><th>metric</th><th>value</th><th>floor</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Plots</h2>
{figs}
{_layer_section(layers or [])}
<h2>Separation power of every observable</h2>
<details><summary>{len(result.separation)} observables, largest first</summary>
<table id="separation"><thead><tr><th>observable</th><th>S</th><th>floor</th><th>ref. outside</th><th>gen. outside</th></tr></thead>
<tbody>{sep_rows}</tbody></table></details>
<h2>Provenance</h2>
<table id="provenance"><tbody>
<tr><td>reference</td><td><code>{esc(prov["reference"]["path"])}</code></td><td><code>{esc(prov["reference"]["sha256"][:16])}…</code></td></tr>
<tr><td>generated</td><td><code>{esc(prov["generated"]["path"])}</code></td><td><code>{esc(prov["generated"]["sha256"][:16])}…</code></td></tr>
<tr><td>versions</td><td colspan="2">{esc(", ".join(f"{k} {v}" for k, v in prov["versions"].items()))}</td></tr>
<tr><td>machine</td><td colspan="2">{esc(str(prov["machine"]))}</td></tr></tbody></table>
<details><summary>All settings</summary><pre>{settings_text}</pre></details>
</main></body></html>
"""


def write_evaluation(
    result: EvaluationResult,
    geometry: CylindricalGeometry,
    out_dir: str | os.PathLike[str],
    force: bool = False,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``summary.md``, the PNG plots and ``report.html`` as the folder ``out_dir``.

    The folder is made whole beside its final name and renamed into place, so it holds a
    complete evaluation or none. With ``force`` a former evaluation there is replaced whole
    (none of its plots stay); a folder of other files is never replaced.

    Raises:
        OutputExistsError: If ``out_dir`` already holds an evaluation and ``force`` is false, or
            holds other files.
    """
    out = Path(out_dir)
    check_evaluation_folder(out, force)
    written: dict[str, Path] = {}
    with atomic_folder(out, force, replaceable=_holds_evaluation, what="an evaluation") as stage:
        rendered: list[tuple[str, str, bytes]] = []
        for name, caption, build in _figures(result, geometry):
            fig = build()
            if fig is None:
                continue
            _save(fig, stage / name)
            rendered.append((name, caption, (stage / name).read_bytes()))
            written[name] = out / name
        jobs = _layer_figures(result, geometry)
        if jobs:
            (stage / "layers").mkdir()
        _render_all([(build, stage / name) for _, name, _, _, build in jobs])
        layers = [(layer_id, label, worst, (stage / name).read_bytes()) for layer_id, name, label, worst, _ in jobs]
        if layers:
            written["layers"] = out / "layers"
        numbers = {**result.to_json_dict(), "verdict": verdict(_jsonable(result.to_json_dict()))}
        texts = {
            "metrics.json": json.dumps(_jsonable(numbers), indent=2),
            "summary.md": _markdown(result, numbers["verdict"]),
            "report.html": _html(result, rendered, numbers["verdict"], layers),
        }
        for name, text in texts.items():
            (stage / name).write_text(text)
            written[name] = out / name
    return written


def _holds_evaluation(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


def check_evaluation_folder(out_dir: str | os.PathLike[str], force: bool) -> None:
    """Refuse, before the long work, a folder that cannot receive an evaluation: one holding an
    evaluation (unless ``force``) or other files."""
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()):
        if not _holds_evaluation(out):
            raise OutputExistsError(f"{out} exists and holds other files than an evaluation; choose another --out")
        if not force:
            raise OutputExistsError(f"{out} already holds an evaluation; use --force to replace it")
    elif out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
