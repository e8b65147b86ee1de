"""Render BENCHMARKS.md from the JSON files in benchmarks/results (figures are never typed by hand).

Run: .venv/bin/python benchmarks/write_benchmarks_md.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from calosurrogate.report.comparison import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PUBLISHED = ROOT.parent / "shared" / "calochallenge" / "published"


# Published CaloChallenge rows quoted beside each of our families (its nearest peers).
PEERS = {
    "flow": [
        "CaloFlow teacher",
        "CaloFlow student",
        "iCaloFlow teacher",
        "iCaloFlow student",
        "CaloINN",
        "CaloDiffusion",
    ],
    "inn": ["CaloINN", "CaloFlow student", "iCaloFlow student"],
    "vae": ["CaloVAE+INN", "CaloShower2GAN", "BoloGAN"],
    "wgan": ["BoloGAN", "CaloShower2GAN", "CaloShower3GAN", "CaloVAE+INN"],
    "qvae": ["CaloVAE+INN", "BoloGAN", "CaloShower2GAN"],
}


def _published_points(dataset: str) -> list[dict]:
    """(label, CPU ms per shower at batch 10,000, AUC high) of every published row that has both."""
    path = PUBLISHED / f"CaloChallenge_results_{dataset}_scalars.csv"
    if not path.exists():
        return []
    points = []
    for row in csv.DictReader(path.open()):
        if row["time CPU 10000"] and row["binary cls high"]:
            points.append({"label": row["submission name"], "ms_per_shower": float(row["time CPU 10000"]),
                           "quality": float(row["binary cls high"])})  # fmt: skip
    return points


def _ms(row: dict, digits: int) -> str:
    """Median time per shower with the 16-84% spread of the repeats."""
    return f"{row['ms_per_shower']:.{digits}f} [{row['ms_per_shower_low']:.{digits}f}, {row['ms_per_shower_high']:.{digits}f}]"


def _speed_sections() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("timing_*.json")):
        data = json.loads(path.read_text())
        rows = data["results"]
        sizes = sorted({r["batch_size"] for r in rows})
        families = ", ".join(sorted({r["family"] for r in rows}))
        out += [f"## Sampling speed by family ({data['geometry']}, {rows[0]['device'] if rows else ''}, "
                f"bf16 {'native' if _bf16_native(data) else 'emulated'}: {families})", "",
                *_provenance(data), "",
                "Default configuration of each family; time per shower is the median of repeated full sampling passes "
                "(noise, network, cut) after warm-up, in ms, with the 16-84% spread of the repeats.", "",
                "| family | precision | " + " | ".join(f"batch {b:,}" for b in sizes) + " |",
                "|---|---|" + "---|" * len(sizes)]  # fmt: skip
        keys = sorted({(r["family"], r["precision"]) for r in rows})
        for family, precision in keys:
            cells = []
            for b in sizes:
                match = [r for r in rows if (r["family"], r["precision"], r["batch_size"]) == (family, precision, b)]
                cells.append(
                    _ms(match[0], 3)
                    if match else "")  # fmt: skip
            out.append(f"| {family} | {precision} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _lever_sections() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("levers_*.json")):
        d = json.loads(path.read_text())
        bf16 = "bf16 native" if _bf16_native(d) else "bf16 emulated"
        out += [f"## Speed levers ({d['geometry']}, CPU with {bf16}, batch {d['results'][0]['batch_size']:,})", "",
                f"Command: `{d['command']}`  ", f"Machine: {_machine(d)}; commit {d['commit']}, {d['date']}"
                + (f" ({d['note']})" if d.get("note") else ""), "",
                "Median ms per shower (16-84% of repeats). bf16's quality cost is measured on trained models above "
                "(the `Surrogate quality` tables: fp32 and bf16 rows of the same model).", "",
                "| family | threads | precision | eager | torch.compile |", "|---|---|---|---|---|"]  # fmt: skip
        keys = sorted({(r["family"], r["threads"], r["precision"]) for r in d["results"]})
        for family, threads, precision in keys:
            cells = []
            for compiled in (False, True):
                match = [r for r in d["results"] if (r["family"], r["threads"], r["precision"]) == (family, threads, precision)
                         and (r["compiled"] or bool(r.get("compile_error"))) == compiled]  # fmt: skip
                if not match:
                    cells.append("")
                elif match[0].get("compile_error"):
                    cells.append(f"failed: {match[0]['compile_error'][:60]}")
                else:
                    cells.append(_ms(match[0], 4))
            out.append(f"| {family} | {threads} | {precision} | {cells[0]} | {cells[1]} |")
        out.append("")
    return out


def _is_pilot(d: dict) -> bool:
    """Short runs that compare variants (tags ``pilot*``): one ablation table, not the Pareto plots."""
    return str(d.get("tag", "")).startswith("pilot")


def _core_reference_line(runs: list[dict]) -> list[str]:
    """How the reference fills the core, for the notes written by ``benchmarks/diagnose_core.py --annotate``."""
    annotated = [d for d in runs if "core_reference" in d]
    if not annotated:
        return []
    d = annotated[0]
    high, low = d["core_reference"]["E > 100 GeV"], d["core_reference"]["E < 10 GeV"]
    return [f"Notes: `python benchmarks/diagnose_core.py REFERENCE GENERATED --layer {d['core_layer']} --annotate RESULT` "
            f"on each row's sample. The reference: E > 100 GeV: ring-0 fraction {high['ring0_fraction']:.2f}, "
            f"log10 spread {high['log10_spread']:.2f}; E < 10 GeV: empty alpha bins {low['empty_alpha_bins']:.2f}.", ""]  # fmt: skip


def _sampling_precision(row: dict) -> str:
    """A diffusion row's sampling precision, and whether its denoiser was compiled (torch.compile)."""
    return row.get("precision", "fp32") + (", compiled" if row.get("compiled") else "")


def _ablation_sections() -> list[str]:
    """One table per geometry, budget and kind of machine: pilots compare only with pilots that
    trained as long on the same kind of CPU (epochs in a budget depend on it)."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("diffusion_steps_*.json"))]
    groups: dict[tuple, list[dict]] = {}
    for d in sorted((d for d in runs if _is_pilot(d)), key=lambda d: d["date"]):
        groups.setdefault((d["geometry"], d["train_minutes_budget"], _trained_on(d)), []).append(d)
    out = []
    for (geometry, minutes, trained), pilots in groups.items():
        first = pilots[0]
        out += [f"## Diffusion ablation ({geometry}, {minutes:g}-minute pilots, trained {trained})", "",
                f"Command: `{first['command']}`, with the `--set` options and `--tag` of each row  ",
                f"Machine: {_machine(first)}; commits {', '.join(sorted({d['commit'] for d in pilots}))} (HEAD when each pilot "
                "finished; each option is off by default, so a later commit leaves the earlier rows' models unchanged)", "",
                f"Each pilot trains for the same short budget ({first.get('train_precision', 'bf16')}, one thread, beside another pilot) and judges "
                f"{first['n_reference']:,} showers (classifiers: `cpu` preset, 1 run; fewer showers than the full runs, so "
                "AUCs are lower than they would be at 10,000 and only comparable within this table).", "",
                *_core_reference_line(pilots),
                "| variant (`--set`) | tag | epochs | steps | ms / shower | AUC low | AUC high | S(E_tot/E_inc) | FPD x 1e3 | note |",
                "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for d in pilots:
            words = d["command"].split()
            sets = ", ".join(words[i + 1] for i, w in enumerate(words) if w == "--set")
            for r in d["results"]:
                out.append(f"| {sets} | {d['tag']} | {d['epochs']} | {r['steps']} | {r['ms_per_shower_batch_10000']:.2f} | "
                           f"{r['auc_low']:.3f} | {r['auc_high']:.3f} | {r['separation_etot_einc']:.4f} | {r['fpd_x1e3']:.0f} | "
                           f"{d.get('note', '')} |")  # fmt: skip
        out.append("")
    return out


def _cfd_cell(row: dict) -> str:
    """CFD of the layer energies with its reference floor; rows measured before CFD was added say so."""
    if "cfd_layer" not in row:
        return "not measured"
    floor = row["cfd_layer"]["floor"]
    return f"{row['cfd_layer']['value']:.3f}" + (f" ({floor:.3f})" if floor is not None else "")


def _auc_cell(row: dict, kind: str) -> str:
    """Mean AUC, with its spread and number of classifier trainings when more than one."""
    runs = row.get("classifier_runs", 1)
    spread = f" ± {row[f'auc_{kind}_std']:.3f} ({runs} runs)" if runs > 1 else ""
    return f"{row[f'auc_{kind}']:.3f}{spread}"


def _judged_cells(row: dict) -> str:
    """ms / shower | AUC low | AUC high | S(E_tot/E_inc) | FPD | CFD layer of a ``sample_and_judge`` row."""
    return (f"{row['ms_per_shower_batch_10000']:.3f} | {_auc_cell(row, 'low')} | {_auc_cell(row, 'high')} | "
            f"{row['separation_etot_einc']:.4f} | {row['fpd_x1e3']:.1f} ± {row['fpd_x1e3_error']:.1f} | {_cfd_cell(row)}")  # fmt: skip


def _distillation_sections() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("distillation_*.json")):
        d = json.loads(path.read_text())
        epochs = ", ".join(f"round {r['round']} ({r['steps']} steps): {r['epochs']} epochs" for r in d["rounds"])
        out += [f"## Diffusion: progressive distillation ({d['geometry']}, Euler sampler)", "",
                *_provenance(d), "",
                f"Teacher: {d['teacher_minutes']:g} minutes ({d['train_precision']}{_threads(d)}, weights of epoch "
                f"{d['teacher_selected_epoch']}). Each student halves the previous model's steps in {d['student_minutes']:g} "
                f"minutes (learning rate {d['student_lr']:g}; {epochs}). At each step count the student is judged beside "
                f"the teacher sampled with as many Euler steps, which costs the same network calls; {d['n_reference']:,} "
                f"showers each (classifiers: `cpu` preset, {d['classifier_runs']} run).", "",
                "| steps | model | ms / shower | AUC low | AUC high | S(E_tot/E_inc) | FPD x 1e3 | CFD layer (floor) |",
                "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        out += [f"| {r['steps']} | {r['model']} | {_judged_cells(r)} |" for r in d["results"]]
        out.append("")
    return out


def _steps_sections() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("diffusion_steps_*.json")):
        d = json.loads(path.read_text())
        if _is_pilot(d):
            continue
        earlier = "".join(f"Earlier rows of this run: `{c}`  \n" for c in d.get("earlier_commands", []))
        out += [f"## Diffusion: quality against sampling steps ({d['geometry']}, objective {d['objective']}, sampler {d['sampler']})", "",
                f"Command: `{d['command']}`  ", f"{earlier}Machine: {_machine(d)}; commit {d['commit']}, {d['date']}", "",
                *([f"Note: {d['note']}", ""] if d.get("note") else []),
                f"Training: {d['train_minutes_budget']:g} minutes ({d.get('train_precision', 'bf16')}{_threads(d)}), {d['epochs']} epochs{_selected(d)}. Each row samples {d['n_reference']:,} showers "
                f"with the reference's energies (batch 10,000) and judges them (classifiers: `cpu` preset; an AUC is one training's, or the mean ± spread of as many as its cell says).", "",
                "| steps | sampling precision | network calls | ms / shower | AUC low | AUC high | S(E_tot/E_inc) | FPD x 1e3 | CFD layer (floor) |",
                "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        out += [
            f"| {r['steps']} | {_sampling_precision(r)} | {r['network_calls']} | {_judged_cells(r)} |"
            for r in d["results"]
        ]
        out.append("")
        # The sweep's precision is the first row's; the most steps there is the model at its best.
        sweep = [
            r
            for r in d["results"]
            if "worst_separation" in r and r.get("precision") == d["results"][0].get("precision")
        ]
        if sweep:
            r = max(sweep, key=lambda r: r["steps"])
            out += [f"Largest separation powers at {r['steps']} steps (reference floor): "
                    + ", ".join(f"{w['feature']} {w['value']:.3f}" + (f" ({w['floor']:.3f})" if w["floor"] is not None else "")
                                for w in r["worst_separation"]) + ".", ""]  # fmt: skip
    return out


UNCALIBRATED = "fast engine (before its Geant4 calibration)"
# ds2/ds3's fast engine holds each shower's containment and has a refitted spot energy since then
# (benchmarks/LOG.md, "The fast engine's 1 TeV resolution"); rows before it used the engine without.
RESOLUTION_REFIT = "2026-12-07 16:30 UTC"


def _data_label(result: dict) -> str:
    """What a benchmark trained and judged on: results before the record existed used the fast
    engine with the published GFlash coefficients."""
    data = result.get("data")
    if not data:
        return UNCALIBRATED if result["geometry"] in ("ds2", "ds3") else "fast engine"
    if data["engine"] == "geant4":
        return f"Geant4 ({data['spectrum'].replace('log-uniform:', '')}, {data['train_showers']:,} training showers)"
    if result["geometry"] in ("ds2", "ds3") and result.get("date", "") < RESOLUTION_REFIT:
        return f"{data['engine']} (calibrated, before its 1 TeV resolution refit)"
    return data["engine"]


def _best_rows(geometry: str) -> list[dict]:
    """The best measured row of each family and data source on a geometry: lowest high-level AUC,
    then the faster."""
    rows = []
    for path in sorted(RESULTS.glob("model_*.json")):
        m = json.loads(path.read_text())
        if m["geometry"] != geometry:
            continue
        for precision, r in m["results"].items():
            rows.append({"family": m["model"], "setting": f"{_model_label(m)}, {precision}",
                         "ms": r["sampling_ms_per_shower_batch_10000"], "auc_high": r["auc_high"], "auc_low": r["auc_low"],
                         "fpd": r["FPD x 1e3"]["value"], "budget": f"{m['train_minutes_budget']:g} min, {m['epochs']} epochs",
                         "machine": _machine(m), "date": m["date"], "data": _data_label(m)})  # fmt: skip
    for path in sorted(RESULTS.glob("diffusion_steps_*.json")):
        d = json.loads(path.read_text())
        if d["geometry"] != geometry or _is_pilot(d):
            continue
        for r in d["results"]:
            tag = f" ({d['tag']})" if d.get("tag") else ""
            rows.append({"family": "diffusion", "setting": f"diffusion{tag}, {r['steps']} {_sampler_label(d, r)} steps, "
                         f"{_sampling_precision(r)}", "ms": r["ms_per_shower_batch_10000"], "auc_high": r["auc_high"],
                         "auc_low": r["auc_low"], "fpd": r["fpd_x1e3"],
                         "budget": f"{d['train_minutes_budget']:g} min, {d['epochs']} epochs", "machine": _machine(d),
                         "date": d["date"], "data": _data_label(d)})  # fmt: skip
    best: dict[tuple[str, str], dict] = {}
    for row in rows:
        key, slot = (round(row["auc_high"], 3), row["ms"]), (row["data"], row["family"])
        if slot not in best or key < (round(best[slot]["auc_high"], 3), best[slot]["ms"]):
            best[slot] = row
    # Geant4 rows first, then the rest; best first within each
    return sorted(best.values(), key=lambda r: (not r["data"].startswith("Geant4"), r["data"], r["auc_high"]))


def _answer_sections() -> list[str]:
    """What a user asks first (which model, how good, how fast), per geometry, before any study."""
    out = []
    for geometry, dataset in (("ds2", "ds2"), ("ds1-photons", "ds1_photons")):
        best = _best_rows(geometry)
        if not best:
            continue
        out += [f"## Best of each family: {geometry}", "",
                "Trained and judged on the data the last column names (Geant4: the geant4 engine's showers, our data-free "
                "EM physics list; fast engine: the built-in parametrized simulator); time per shower on a CPU at batch "
                "10,000; AUC high/low: the high-level and low-level classifiers (0.5 = indistinguishable); the rows of "
                "every run and the commands are in the studies below.", "",
                "| family | best setting | AUC high | AUC low | FPD x 1e3 | ms / shower | training | data |",
                "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        out += [f"| {r['family']} | {r['setting']} | {r['auc_high']:.3f} | {r['auc_low']:.3f} | {r['fpd']:.1f} | "
                f"{r['ms']:.2f} | {r['budget']} | {r['data']} |" for r in best]  # fmt: skip
        published = _published_points(dataset)
        if published:
            top = sorted(published, key=lambda p: p["quality"])[:3]
            out += [
                "",
                "Published CaloChallenge 2022 rows with the lowest AUC high (Geant4 data, their hardware): "
                + "; ".join(f"{p['label']} {p['quality']:.3f} at {p['ms_per_shower']:g} ms" for p in top)
                + ".",
            ]
        out += ["", f"![quality against speed, {geometry}](benchmarks/pareto_{geometry}.png)", ""]
    return out


def _pareto_sections() -> list[str]:
    """One quality-vs-speed table and plot per geometry over every trained-model benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    from calosurrogate.plotting import figure_pareto

    out = []
    models = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("model_*.json"))]
    steps_results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("diffusion_steps_*.json"))]
    steps_results = [d for d in steps_results if not _is_pilot(d)]
    for geometry in sorted({m["geometry"] for m in models + steps_results}):
        ours = []
        lines = [f"## Quality against speed ({geometry})", "",
                 "Every trained benchmark below, at each sampling precision (CPU, batch 10,000); AUC high is the "
                 "high-level classifier AUC (0.5 = indistinguishable from the reference). Our rows: the data their "
                 "column names and the budget stated per model; published rows: the official Geant4 files, their own "
                 "hardware.", "",
                 "| model | data | precision | training | ms / shower | AUC high | AUC low | FPD x 1e3 |",
                 "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for m in (m for m in models if m["geometry"] == geometry):
            for precision, r in m["results"].items():
                ours.append({"label": f"{_model_label(m)} {precision}", "ms_per_shower": r["sampling_ms_per_shower_batch_10000"],
                             "quality": r["auc_high"]})  # fmt: skip
                lines.append(f"| {_model_label(m)} | {_data_label(m)} | {precision} | {m['train_minutes_budget']:g} min, {m['epochs']} epochs | "
                             f"{r['sampling_ms_per_shower_batch_10000']:.3f} | {r['auc_high']:.3f} | {r['auc_low']:.3f} | "
                             f"{r['FPD x 1e3']['value']:.1f} |")  # fmt: skip
        geometry_runs = [d for d in steps_results if d["geometry"] == geometry]
        # Every run goes in the table; only the latest model (its tag, every sampler) in the plot,
        # where the lines of all runs would overlap.
        latest = max(geometry_runs, key=lambda d: d["date"]) if geometry_runs else None
        for steps_run in geometry_runs:
            fewest = min(r["steps"] for r in steps_run["results"])
            for r in steps_run["results"]:
                precision = _sampling_precision(r)
                # One line per sampling precision, labelled by step count only (the first names the family).
                family = "diffusion" + (f" ({steps_run['tag']})" if steps_run.get("tag") else "")
                series = f"{family} {_sampler_label(steps_run, r)} {precision}"
                first = f"{family} {_sampler_label(steps_run, r)} {r['steps']} steps {precision}"
                label = first if r["steps"] == fewest else f"{r['steps']}"
                if steps_run.get("tag") == latest.get("tag"):
                    ours.append({"label": label, "series": series,
                                 "ms_per_shower": r["ms_per_shower_batch_10000"], "quality": r["auc_high"]})  # fmt: skip
                lines.append(f"| {family}, {r['steps']} {_sampler_label(steps_run, r)} steps | {_data_label(steps_run)} | {precision} | "
                             f"{steps_run['train_minutes_budget']:g} min, {steps_run['epochs']} epochs | "
                             f"{r['ms_per_shower_batch_10000']:.3f} | {r['auc_high']:.3f} | {r['auc_low']:.3f} | {r['fpd_x1e3']:.1f} |")  # fmt: skip
        dataset = {"ds1-photons": "ds1_photons", "ds2": "ds2"}.get(geometry)
        published = _published_points(dataset) if dataset else []
        figure = figure_pareto(ours, published)
        png = ROOT / "benchmarks" / f"pareto_{geometry}.png"
        figure.savefig(png, dpi=110)
        lines += ["", f"![quality against speed, {geometry}](benchmarks/{png.name})", ""]
        out += lines
    return out


def _reliability_sections() -> list[str]:
    data = _load("fault_harness")
    if not data:
        return []
    trials = data["trials"]
    out = ["## Reliability: the fault harness", "",
           *_provenance(data), "",
           "Real `calo` processes on small data (tests/faults.py), killed at a random fraction (0.1-0.95) of their "
           "uninterrupted run time, then finished (`--resume` for training); races start one command twice on one "
           "output. Outputs are judged by reading them.", "",
           "| command | trial | trials | output after the kill: complete / none / half | partials or locks left | "
           "left after the re-run | re-run completes | resumed weights = uninterrupted |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for job in sorted({t["job"] for t in trials}):
        for kind in ("SIGTERM", "SIGKILL", "race"):
            rows = [t for t in trials if t["job"] == job and t["kind"] == kind]
            if not rows:
                continue
            counts = [sum(t["output"] == state for t in rows) for state in ("complete", "absent", "half")]
            weights = [t["same_weights"] for t in rows if t["same_weights"] is not None]
            out.append(
                f"| {job} | {kind} | {len(rows)} | {' / '.join(map(str, counts))} | "
                f"{sum(bool(t['leftovers']) for t in rows)} | {sum(not t['swept'] for t in rows)} | "
                f"{sum(t['rerun_ok'] for t in rows)} of {len(rows)}{' (one winner, one one-line refusal)' if kind == 'race' else ''} | "
                f"{f'{sum(weights)} of {len(weights)}' if weights else '-'} |"
            )
    out += ["", f"{data['kills']} kills and {data['races']} races: {data['failures']} failed, {data['tracebacks']} tracebacks. "
            "A SIGKILL leaves its partial file or lock (nothing can run after it); the next run of any command into "
            "that folder removes them once their writer's process is gone.", "",
            f"Property tests (hypothesis, tests/test_properties.py): {data['property_examples_per_test']} random inputs "
            f"each for the shower-file validator and the config parser; {data['property_tests']}.", ""]  # fmt: skip
    return out


def _parity_sections() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("parity_*.json")):
        d = json.loads(path.read_text())
        n = d["n_showers_each"]
        out += [f"## Against the official code ({d['geometry']}, {n:,} vs {n:,} showers, {d['features']} high-level features)", "",
                *_provenance(d), "",
                f"The official evaluation's FPD and KPD are {d['official_code']['fpd_kpd']}'s, its PRDC the reference "
                f"implementation's ({d['official_code']['prdc']}); both timed in the same process right after ours, on the "
                "same feature arrays and settings (FPD 10k-50k x 20 x 10 sizes, KPD 10 x 10k, PRDC k = 5 at 10k per set). "
                "The official histograms and classifiers are not on PyPI (and are not copied here): they are timed "
                "for us alone.", "",
                "| metric group | ours (s) | official (s) |", "|---|---|---|"]  # fmt: skip
        out += [
            f"| {k} | {v['ours_s']} | {'-' if v['official_s'] is None else v['official_s']} |"
            for k, v in d["timings"].items()
        ]
        f = d["fpd_plus_kpd"]
        out += ["", f"FPD + KPD: {f['ours_with_cached_floors_s']:.0f} s against the official {f['official_s']:.0f} s "
                f"({f['speed_up']:.2f}x) once the reference's floors are cached (they cost one more pass the first time; "
                "the official code computes no floors). Goal (issue 27): at least 1.5x, and no metric slower than its "
                "official counterpart.", "",
                "| value | ours | official | difference |", "|---|---|---|---|"]  # fmt: skip
        for key, v in d["values"].items():
            if "official_error" in v:
                diff = abs(v["ours"] - v["official"])
                out.append(
                    f"| {key} | {v['ours']:.6f} ± {v['ours_error']:.6f} | {v['official']:.6f} ± {v['official_error']:.6f} | {diff:.1e} |"
                )
            else:
                out.append(f"| {key} (one draw) | {v['ours']:.6f} | {v['official']:.6f} | {v['difference']:.1e} |")
        out += ["", "PRDC equals the reference implementation on the same arrays (goal: within 1e-6); FPD and KPD agree "
                "to the differences shown, far inside their errors (KPD's Gram products are formed in float32, its sums "
                "in float64).", ""]  # fmt: skip
    return out


def _geant4_sections() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("geant4_*.json")):
        if path.name.startswith("geant4_fastsim_"):
            continue
        d = json.loads(path.read_text())
        out += [f"## The geant4 engine ({d['geometry']})", "", *_provenance(d), "",
                "Real Geant4 11.4 (geant4-pybind 0.1.3) with the data-free EM list (README, `--engine geant4`). "
                "Time per shower after warm-up, with the voxels scored (Geant4's compiled scorer, read per event "
                "from Python) and bare (no scorer); physics from the same runs with every deposit accounted for "
                "(leakage stopped in tungsten around the calorimeter).", "",
                "| electron energy | showers | s / shower, scored | bare | overhead | sampling fraction | "
                "resolution | leakage | zero voxels | stored E_tot / E_inc |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for energy, t in d["timing"].items():
            ph = d["physics"][energy]
            out.append(f"| {energy} | {t['showers']} | {t['scored_s']:.3f} | {t['bare_s']:.3f} | {t['overhead']:.2f}x | "
                       f"{ph['sampling_fraction']:.4f} | {ph['resolution']:.1%} | {ph['leakage_fraction']:.2%} | "
                       f"{ph['zero_voxels']:.2f} | {ph['response_stored']:.3f} |")  # fmt: skip
        w = d["workers"]
        out += ["", f"Workers ({w['showers']} showers, {w['spectrum']}): {w['showers_per_s']['1']} showers/s with one, "
                f"{w['showers_per_s']['2']} with two ({w['speed_up']:.2f}x). Goals (issue 21): scoring within 1.25x of "
                "bare stepping; two workers at least 1.8x one.", ""]  # fmt: skip
    return out


def _paraflow_worst_separation(d: dict, band: str) -> float:
    return max(v["value"] for v in d["judged"][band]["separation"]["all"].values())


def _paraflow_config_file(d: dict) -> str:
    """The set-up's config file (results made before it was recorded: ParaFlow's own)."""
    return d.get("config_file", "configs/paraflow-paraflow.yaml")


def _paraflow_setups(runs: list[dict]) -> list[str]:
    """One row per ParaFlow set-up measured: what it is, what it cost, how good it came out."""
    out = ["### The set-ups measured", "",
           "| set-up | blocks x width, bins | training | largest separation power, trained / held-out band | "
           "largest mean-shape difference over the (d, b) grid | central 4 x 4 | d: coverage L / S | b: coverage L / S |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for d in runs:
        c, judged = d["model_config"], d["judged"]["inband"]
        pooled = d["inference"]["trained_band"]
        coverage = [f"{pooled[n]['coverage']:.2f} / " + (f"{pooled[n]['sandwich']['coverage']:.2f}" if "sandwich" in pooled[n] else "-")
                    for n in ("plate_thickness", "plate_distance")]  # fmt: skip
        out.append(f"| {_paraflow_config_file(d)} | {c['transforms']} x {c['hidden']}, {c['bins']} | "
                   f"{d['train_minutes_budget']:g} min, {d['epochs']} epochs | {_paraflow_worst_separation(d, 'inband'):.2e} / "
                   f"{_paraflow_worst_separation(d, 'heldout'):.2e} | "
                   f"{max(v['largest_relative_difference'] for v in judged['mean_shape_grid'].values()):.1%} | "
                   f"{judged['average_image']['central_4x4_largest_relative_difference']:.1%} | {' | '.join(coverage)} |")  # fmt: skip
    out += ["", "Coverage L / S: of the Laplace and sandwich intervals, pooled over the trained band's points. Rows without "
            "sandwich errors were measured before `calo infer` dequantised the showers as the model was trained (commit "
            "59ad7bd): their coverage is that bug's, not the model's."]  # fmt: skip
    return [*out, ""]


def _paraflow_sections() -> list[str]:
    """ParaFlow (issue 22): the best set-up in and out of its held-out band, inference, design, the
    set-ups compared, and the fast engine's set-up against Geant4's."""
    out = []
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("paraflow*.json")) if p.stem != "paraflow_geant4"]
    runs.sort(key=lambda r: _paraflow_worst_separation(r, "inband"))
    d = runs[0] if runs else None
    if d:
        band = " AND ".join(f"{name} {lo:g}-{hi:g}" for name, lo, hi in d["held_out"])
        out += [f"## ParaFlow: the best set-up on the crystal window (fast engine, {d['n_train']:,} photons)", "",
                *_provenance(d), "",
                f"Set-up {_paraflow_config_file(d)}: MAF, {d['model_config']['transforms']} blocks of "
                f"{d['model_config']['hidden']}, {d['model_config']['bins']} bins; {d['train_minutes_budget']:g}-minute "
                f"budget ({d['threads']} threads; other jobs ran beside it), {d['epochs']} epochs (weights of epoch {d['selected_epoch']}); trained "
                f"without the band {band}. Judged on fast-engine photons in the trained band and inside the held-out "
                "one, each beside its floor (two halves of the reference). Goals (issue 22): separation powers "
                "O(1e-4); mean shapes over the (d, b) grid within 6%; central 4 x 4 crystals of the average image "
                "within 2%.", "",
                "| shape | separation, trained band | floor | held-out band | floor | mean over (d, b) grid, trained band | floor | held-out band |",
                "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        judged = d["judged"]
        for shape, s in judged["inband"]["separation"]["all"].items():
            h = judged["heldout"]["separation"]["all"][shape]
            gi, gh = judged["inband"]["mean_shape_grid"][shape], judged["heldout"]["mean_shape_grid"][shape]
            out.append(f"| {shape} | {s['value']:.2e} ± {s['error']:.0e} | {s['floor']:.1e} | {h['value']:.2e} ± "
                       f"{h['error']:.0e} | {h['floor']:.1e} | {gi['largest_relative_difference']:.1%} | "
                       f"{gi['floor']:.1%} | {gh['largest_relative_difference']:.1%} |")  # fmt: skip
        ai, ah = judged["inband"]["average_image"], judged["heldout"]["average_image"]
        worst = {band: max((v["value"] for k, shapes in judged[band]["separation"].items() if k != "all"
                            for v in shapes.values()), default=float("nan")) for band in ("inband", "heldout")}  # fmt: skip
        out += ["", f"Central 4 x 4 crystals of the average image: within {ai['central_4x4_largest_relative_difference']:.1%} "
                f"(floor {ai['central_4x4_floor']:.1%}) in the trained band, {ah['central_4x4_largest_relative_difference']:.1%} "
                f"(floor {ah['central_4x4_floor']:.1%}) in the held-out one. Largest separation power in any slice of d or b: "
                f"{worst['inband']:.2e} (trained band), {worst['heldout']:.2e} (held out). Sampling "
                f"{d['sampling_ms_per_shower_batch_1000']['inband']:.1f} ms per shower (batch 1000, fp32, CPU). "
                "Plots and every slice: `evaluation_inband/report.html` and `evaluation_heldout/report.html` in the work folder.", ""]  # fmt: skip
        inf = d["inference"]
        out += [f"### Inferring the plate from {inf['sample_size']:,} photons (`calo infer`)", "",
                "Pseudo-experiments: samples of photons simulated with one plate configuration each; the fit "
                "maximises the surrogate's likelihood over (d, b) with the energies known; errors from the Laplace "
                "approximation (L) and the sandwich covariance (S), which holds where the surrogate is not the true "
                "density. Goals (issue 22): |bias| under a third of the quoted error; 68% coverage 0.60-0.76.", "",
                "| truth d (X0), b (cm) -> mean estimate | samples | d: bias | resolution | error L / S | coverage L / S | b: bias | resolution | error L / S | coverage L / S | s / fit |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        rows = [
            *list(inf["points"].items()),
            ("trained band, pooled", {**inf["trained_band"], "samples": "", "seconds_per_fit": None}),
        ]
        for label, r in rows:
            cells = []
            for name in ("plate_thickness", "plate_distance"):
                c = r[name]
                w = c.get("sandwich")
                w_error, w_coverage = (f"{w['mean_error']:.3g}", f"{w['coverage']:.2f}") if w else ("-", "-")
                cells.append(f"{c['bias']:+.3g} ± {c['bias_error']:.1g} | {c['resolution']:.3g} | {c['mean_error']:.3g} / "
                             f"{w_error} | {c['coverage']:.2f} / {w_coverage} ± {c['coverage_error']:.2f}")  # fmt: skip
            seconds = f"{r['seconds_per_fit']:.0f}" if r.get("seconds_per_fit") else ""
            samples = f"{r.get('converged', '')}/{r['samples']}" if r["samples"] != "" else ""
            if label in inf["points"]:
                truth = [float(part.split("=")[1]) for part in label.split()]
                label += (
                    f" -> {truth[0] + r['plate_thickness']['bias']:.2f}, {truth[1] + r['plate_distance']['bias']:.1f}"
                )
            out.append(f"| {label} | {samples} | {' | '.join(cells)} | {seconds} |")
        out.append("")
        design = d.get("design")
        if design:
            sur, best, at = design["surrogate"], design["simulator_best"], design["simulator_at_choice"]
            out += ["### Choosing the plate's distance through the surrogate (`calo design`)", "",
                    f"At d = {design['thickness_x0']:g} X0: the distance b that best separates converted from "
                    "unconverted photons by R9 < 0.94 (the share the cut tags is maximised; unconverted showers do not "
                    f"change with b). {design['showers_per_round']:,} surrogate photons per round, "
                    f"{len(sur['history'])} rounds, {design['seconds']:.0f} s. Checked against the fast engine's truth "
                    "(20,000 photons per point, conversions known):", "",
                    f"- the surrogate chose b = {sur['values'][0]:.1f} cm ({'converged' if sur['converged'] else 'not converged'}); "
                    f"the engine's separation there: {at['separation']:.3f} ± {at['separation_error']:.3f}",
                    f"- the engine's best point of its scan: b = {best['plate_distance']:g} cm, separation "
                    f"{best['separation']:.3f} ± {best['separation_error']:.3f}", "",
                    "| b (cm) | " + " | ".join(f"{r['plate_distance']:g}" for r in design["simulator_scan"]) + " |",
                    "|---|" + "---|" * len(design["simulator_scan"]),
                    "| separation (engine) | " + " | ".join(f"{r['separation']:.3f}" for r in design["simulator_scan"]) + " |",
                    "| share tagged (engine) | " + " | ".join(f"{r['share_tagged']:.3f}" for r in design["simulator_scan"]) + " |",
                    "", "Rounds of the surrogate's search (b, share tagged): "
                    + ", ".join(f"{h['values'][0]:.1f} cm {-h['loss']:.3f}" for h in sur["history"]) + ".", ""]  # fmt: skip
        out += _paraflow_setups(runs)
    g = _load("paraflow_geant4")
    if g:
        out += ["## ParaFlow's set-up: the fast engine against Geant4", "", *_provenance(g), "",
                "Mean shapes per photon at three plate configurations (energies uniform 20-100 GeV, brightest and "
                "second crystal as fractions of the photon's energy), the fast engine's relative difference to Geant4 "
                "and its pull (difference over the combined standard error).", "",
                "| d (X0), b (cm) | Geant4 / fast photons | " + " | ".join(g["configurations"][0]["shapes"]) + " |",
                "|---|---|" + "---|" * len(g["configurations"][0]["shapes"])]  # fmt: skip
        for row in g["configurations"]:
            out.append(f"| {row['plate_thickness']:g}, {row['plate_distance']:g} | {row['geant4_photons']:,} / {row['fast_photons']:,} | "
                       + " | ".join(f"{v['relative_difference']:+.1%} ({v['pull']:+.1f})" for v in row["shapes"].values()) + " |")  # fmt: skip
        out.append("")
    return out


def _shipped_speed_sections() -> list[str]:
    """The shipped models timed alone on the machine (quality from where their showers were judged)."""
    out = []
    for path in sorted(RESULTS.glob("shipped_speed_*.json")):
        d = json.loads(path.read_text())
        q = d["quality_as_shipped"]
        memory = any("memory" in r for r in d["results"])
        title = " (freed memory reused or not)" if d.get("tag") == "memory" else ""
        out += [f"## The shipped model `{d['name']}`: time per shower on a quiet machine ({d['geometry']}){title}", "",
                *_provenance(d), "",
                f"One sampling pass of {d['batch_size']:,} showers per row (shipped with the {d['sampler']} sampler; {d['threads']} threads, "
                "nothing else running), after the one-time compilation. The model as shipped (64 steps) was judged at "
                f"AUC high {q['auc_high']:.3f} +- {q['auc_high_std']:.3f}, low {q['auc_low']:.3f} +- {q['auc_low_std']:.3f}, "
                f"FPD x 1e3 {q['fpd_x1e3']:.1f}; fewer steps: the rows of the same run in Quality against speed (ds2).", ""]  # fmt: skip
        if memory:
            out += ["Memory: `reused`, freed memory kept and reused between operations (calosurrogate.memory, the default); "
                    "`mapped`, every large tensor on fresh pages the kernel zeroes (CALOSURROGATE_REUSE_MEMORY=0, as before). "
                    "The passes of the two alternate; same showers: bit for bit the first mode's.", ""]  # fmt: skip
        out += ["| sampler | steps | compiled | precision | " + "memory | same showers | " * memory
                + "ms / shower (median) | range of the passes | preparation (s): a one-step pass, compiling on the first |",
                "|---|---|---|---|" + "---|---|" * memory + "---|---|---|"]  # fmt: skip
        out += [f"| {r.get('sampler', d['sampler'])} | {r['steps']} | {r['compiled']} | {r['precision']} | "
                + (f"{r['memory']} | {r['same_showers_as_first_mode']} | " if memory else "") + f"{r['ms_per_shower']:.2f} | "
                + ("-" if "ms_per_shower_range" not in r else "{:.2f}-{:.2f}".format(*r["ms_per_shower_range"]))
                + f" | {r['prepare_seconds']} |" for r in d["results"]]  # fmt: skip
        out += ["", "Whole runs vary too: quiet runs of the same code an hour apart differed by up to 10-40% at one setting "
                "(benchmarks/LOG.md); the time does not depend on sigma_max (the same operations)."]  # fmt: skip
        out += [""]
    return out


def _sampler_label(run: dict, row: dict) -> str:
    """The sampler of a diffusion_steps row, with the noise level it started from where not the default."""
    from calosurrogate.models.diffusion.config import SamplingConfig

    sigma_max = row.get("sigma_max", SamplingConfig.sigma_max)
    return run["sampler"] + ("" if sigma_max == SamplingConfig.sigma_max else f" (sigma_max {sigma_max:g})")


def _few_step_sections() -> list[str]:
    """Issue 24's samplers on one model (the shipped ds2 diffusion weights): quality per sampler and
    step count where the showers were judged, time per shower alone on the machine."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("diffusion_steps_ds2_edm_*compiled*_shipped.json"))]
    if not runs:
        return []
    speed = _load("shipped_speed_ds2-diffusion") or {"results": []}
    quiet = {(r.get("sampler", speed.get("sampler")), r["steps"]): r["ms_per_shower"] for r in speed["results"]}
    out = ["## Few-step samplers on one model (ds2)", "",
           "The shipped ds2 diffusion weights (Quality against speed (ds2), tag shipped), judged per sampler, highest noise "
           "level sigma_max and step count on 10,000 fast-engine reference showers (3 classifier trainings: mean +- spread). "
           f"Time per shower: alone on the machine, {speed.get('threads', '?')} threads, batch 10,000, compiled, bf16 "
           f"(`{speed.get('command', '-')}`; the same operations whatever sigma_max); '-' where not timed so. Commands: each "
           "run's `command` in benchmarks/results/diffusion_steps_ds2_edm_*_compiled*_shipped.json.", "",
           "| sampler | sigma_max | steps | ms / shower (quiet) | AUC high | AUC low | FPD x 1e3 | CFD voxel (floor) | worst-separated feature (S, floor) |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = [
        (d["sampler"], r.get("sigma_max", d["model_config"]["sampling"]["sigma_max"]), r)
        for d in runs
        for r in d["results"]
    ]
    for sampler, sigma_max, r in sorted(rows, key=lambda x: (x[0], -x[1], x[2]["steps"])):
        worst = r["worst_separation"][0]
        ms = quiet.get((sampler, r["steps"]))
        out.append(f"| {sampler} | {sigma_max:g} | {r['steps']} | {'-' if ms is None else f'{ms:.2f}'} | {r['auc_high']:.3f} +- {r['auc_high_std']:.3f} | "
                   f"{r['auc_low']:.3f} +- {r['auc_low_std']:.3f} | {r['fpd_x1e3']:.0f} | {r['cfd_voxel']['value']:.1f} ({r['cfd_voxel']['floor']:.1f}) | "
                   f"{worst['feature']} ({worst['value']:.3f}, {worst['floor']:.3f}) |")  # fmt: skip
    scan = _load("sigma_max_ds2")
    if scan:
        out += ["", "Where sampling should start (`" + scan["command"] + "`; one classifier training per AUC, a scan): the codes "
                "are standardised on hits, so an empty voxel's code lies up to ~19 units from zero; steps above the noise level "
                "that hides that are lost to the levels that shape the shower. 'variance above': analytic-ddpm's extra variance "
                "only above this noise level, plain DDPM steps below (0: everywhere).", "",
                "| sampler | steps | sigma_max | variance above | AUC high | AUC low | FPD x 1e3 |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        out += [f"| {r['sampler']} | {r['steps']} | {r['sigma_max']:g} | {r['variance_above']:g} | {r['auc_high']:.3f} | "
                f"{r['auc_low']:.3f} | {r['fpd_x1e3']:.0f} |" for r in scan["results"]]  # fmt: skip
    study = _load("ancestral_variance_ds2")
    if study:
        out += ["", f"What the ancestral step's variance should be, at 32 steps ({study['note']}):", "",
                "| variant | AUC high | AUC low | FPD x 1e3 | CFD layer |", "|---|---|---|---|---|"]  # fmt: skip
        out += [f"| {r['variant']} | {r['auc_high']:.3f} +- {r['auc_high_std']:.3f} | {r['auc_low']:.3f} +- {r['auc_low_std']:.3f} | "
                f"{r['fpd_x1e3']:.0f} | {r['cfd_layer']['value']:.2f} |" for r in study["results"]]  # fmt: skip
        if study.get("schedule"):
            out += ["", study["schedule"]["what"] + ": " + "; ".join(
                f"rho {r['rho']:g}: AUC high {r['auc_high']:.3f}, low {r['auc_low']:.3f}, FPD x 1e3 {r['fpd_x1e3']:.0f}"
                for r in sorted(study["schedule"]["results"], key=lambda r: r["rho"])) + "."]  # fmt: skip
    out.append("")
    return out


def _scaling_sections() -> list[str]:
    """Issue 26's scaling on one machine: DDP training and Dask generation and Geant4 simulation."""
    d = _load("scaling_ds2")
    if not d:
        return []
    parts = d["parts"]
    out = ["## Scaling on one machine: torchrun and Dask (ds2)", "", f"Machine: {_machine(d)}", ""]
    if "ddp" in parts:
        p = parts["ddp"]
        out += [f"Training (`{p['command']}`, {p['date']}): the ds2 diffusion recipe ({p['config']}, bf16), the second "
                f"of two epochs over {p['train_showers']:,} showers; the global batch split over the processes. "
                "Goal: 2 processes >= 1.7x one.", "",
                "| global batch | processes x threads | s / epoch | showers / s | ratio to 1 x 1 |", "|---|---|---|---|---|"]  # fmt: skip
        for batch, entry in p["by_global_batch"].items():
            base = entry["variants"]["1 process, 1 thread"]["showers_per_second"]
            out += [f"| {batch} | {k} | {v['epoch_seconds']:.1f} | {v['showers_per_second']:.0f} | "
                    f"{v['showers_per_second'] / base:.2f} |" for k, v in entry["variants"].items()]  # fmt: skip
        out += [""]
    for key, what in (("sample", "Generation"), ("geant4", "Geant4 simulation")):
        if key not in parts:
            continue
        p = parts[key]
        detail = (f"`calo sample --run {Path(p['run']).parent.name} --precision auto --shard-size 10000`" if key == "sample"
                  else f"`calo simulate --engine geant4`, ds2 electrons at {p['energy']}, shards of {p['shard_size']}")  # fmt: skip
        out += [f"{what} (`{p['command']}`, {p['date']}): {p['showers']:,} showers, {detail}; wall time of the command "
                "(the local cluster's start included). Goal: 2 workers >= 1.8x one.", "",
                "| Dask workers | wall s | showers / s | ratio |", "|---|---|---|---|"]  # fmt: skip
        base = p["variants"]["1 worker(s)"]["showers_per_second"]
        out += [f"| {k.split()[0]} | {v['wall_seconds']:.1f} | {v['showers_per_second']:.1f} | {v['showers_per_second'] / base:.2f} |"
                for k, v in p["variants"].items()]  # fmt: skip
        out += [""]
    if "million" in parts:
        p = parts["million"]
        out += [f"One million showers (`{p['command']}`, {p['date']}): {p['showers']:,} ds2 showers of "
                f"{Path(p['run']).parent.name} written as {p['shards']} shards by {p['workers']} Dask worker(s) in "
                f"{p['write_seconds'] / 60:.1f} min ({p['gigabytes_on_disk']:.1f} GB of gzip HDF5), then read back as one file "
                f"(every shower, through the virtual datasets) in {p['read_seconds'] / 60:.1f} min: {p['showers_read']:,} showers.", ""]  # fmt: skip
    return out


def _ds3_sections() -> list[str]:
    """Dataset 3 end to end (issue 26): each step's peak memory, the AUCs and time per shower in fp32 and bf16."""
    runs = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("ds3_*.json"))]
    if not runs:
        return []
    out = ["## Dataset 3 (40,500 voxels) end to end within 24 GiB", "",
           f"Machine: {_machine(runs[0])}. Data: the fast engine, 50,000 training and 50,000 reference showers "
           "(`calo simulate --geometry ds3 --n 50000 --workers 2`, seeds 1 and 2: sharded files). Each step is one `calo` "
           "command; peak memory is its maximum resident set (`/usr/bin/time -v`). Goal: every step below 20 GiB. "
           "The low-level classifier inputs (50,000 x 40,501 per sample) are held in bf16 (`classifier_inputs: auto`). "
           "Every command ran on one thread with one or two other jobs beside it (times are upper bounds); "
           "the diffusion model samples 32 DDPM steps through the compiled denoiser, 2,000 showers a batch.", "",
           "| family | training | step | precision | showers | ms / shower | wall min | peak GiB | AUC low | AUC high | FPD x 1e3 | metrics |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for d in runs:
        steps = d["steps"]
        train = steps.get("train")
        if train:
            epochs = train["log"].count("\n") - 1
            out += [f"| {d['family']} | {d['minutes']:g} min, {epochs} epochs | train | bf16 | 45,000 | | "
                    f"{train['wall_seconds'] / 60:.1f} | {train['peak_gib']:.1f} | | | | |"]  # fmt: skip
        for precision in ("fp32", "bf16"):
            sample, judged = steps.get(f"sample_{precision}"), steps.get(f"evaluate_{precision}")
            if sample:
                out += [f"| {d['family']} | | sample | {precision} | {d['n_sample']:,} | {sample['ms_per_shower']:.2f} | "
                        f"{sample['wall_seconds'] / 60:.1f} | {sample['peak_gib']:.1f} | | | | |"]  # fmt: skip
            if judged:
                cls = judged["classifiers"]
                auc = {k: f"{cls[k]['auc']:.3f}" if k in cls else "" for k in ("cls-low", "cls-high")}
                fpd = judged["scalars"].get("FPD x 1e3", {}).get("value")
                out += [f"| {d['family']} | | evaluate | {precision} | {cls.get('cls-high', {}).get('showers_per_class', 0):,} | | "
                        f"{judged['wall_seconds'] / 60:.1f} | {judged['peak_gib']:.1f} | {auc['cls-low']} | {auc['cls-high']} | "
                        f"{'' if fpd is None else f'{fpd:.1f}'} | {judged['metrics']} |"]  # fmt: skip
        out += ["", f"Command ({d['family']}): `{d['command']}`; commit {d['commit']}, {d['date']}.", ""]
    published = _published_rows("ds3", ["CaloDiffusion", "CaloDREAM", "conv. L2LFlows", "CaloVAE+INN", "Calo-VQ"])
    if published:
        out += ["Published ds3 rows (official Geant4 data; for scale):", "",
                "| model | AUC low | AUC high | FPD x 1e3 | CPU ms / shower at batch 10,000 |", "|---|---|---|---|---|",
                *published, ""]  # fmt: skip
    return out


def _points_sections() -> list[str]:
    """ild-ecal point clouds (issue 23): CaloClouds' student and teacher against the fast engine's showers."""
    out = []
    for path in sorted(RESULTS.glob("points_ild*.json")):
        out += _points_section(json.loads(path.read_text()))
    path = RESULTS / "showerflow_ild.json"
    if path.exists():
        out += _showerflow_section(json.loads(path.read_text()))
    return out


def _showerflow_section(d: dict) -> list[str]:
    """CaloClouds ablations: one stage changed at a time (ShowerFlow's settings, the teacher's width)."""
    runs = d["runs"]
    names = list(next(iter(runs.values()))["jsd"])
    out = ["### ild-ecal: CaloClouds ablations, one stage at a time", "", *_provenance(d), "",
           f"One-step students judged on {d['n_reference']:,} reference showers (half against the showers generated "
           "at the other half's conditions; floor: half against half), same noise seeds. Each run starts from "
           "`run` (or the run named) and trains one stage anew (`train.from_run`, `train.retrain`). Centre x, y: "
           "ShowerFlow also draws each shower's energy-weighted centre in x and y and the points are moved onto it "
           "(CaloClouds II); mean layer: it also draws the energy-weighted mean layer and the layer energies are "
           "tilted to it. Each row gives the commit it was judged at.", "",
           "| run | " + " | ".join(names) + " | angle S all / top | judged |", "|---" * (len(names) + 3) + "|"]  # fmt: skip
    for name, row in runs.items():
        flow, model, train = row["showerflow"], row["model_config"], row["train_config"]
        parts = [f"ShowerFlow {flow['steps']:,} steps ({flow['minutes']:.0f} min)" if flow else "ShowerFlow of the "
                 "run it starts from"]  # fmt: skip
        parts += [label for key, label in (("centre_of_gravity", "centre x, y"), ("mean_layer", "mean layer"))
                  if model.get(key)]  # fmt: skip
        if model.get("flow_jitter", 0.01) != 0.01:
            parts.append(f"jitter {model['flow_jitter']:g}")
        if train.get("precision") == "fp32":
            parts.append("trained in fp32")
        parts.append(f"teacher {model['hidden']} wide")
        source = f" (from `{Path(row['from_run']).name}`)" if row.get("from_run") else ""
        out.append(f"| `{name}`{source}: {', '.join(parts)} | " + " | ".join(f"{row['jsd'][n]['value']:.3f}" for n in names)
                   + f" | {row['angles']['all']['value']:.3f} / {row['angles']['top']['value']:.3f} | "
                   f"{row['judged']['commit']} |")  # fmt: skip
    row = next(iter(runs.values()))
    out += ["| floor | " + " | ".join(f"{row['jsd'][n]['floor']:.3f}" for n in names)
            + f" | {row['angles']['all']['floor']:.3f} / {row['angles']['top']['floor']:.3f} | |", ""]  # fmt: skip
    return out


def _points_section(d: dict) -> list[str]:
    q = d["quality"]
    config = d.get("model_config", {})
    student = (
        f"student {config['student_hidden']} wide, {config['student_layers']} layers"
        if config.get("student_hidden")
        else "student as wide as the teacher"
    ) + ("; ShowerFlow draws the centre of gravity" if config.get("centre_of_gravity") else "")
    names = list(q["student/inclusive/5mm"]["jsd"])
    variants = [k for k in q if k.endswith("/5mm") or k.endswith("/10mm")]
    out = [f"## ild-ecal: photon showers as point clouds (CaloClouds, fast-engine data; {student})", "",
           *_provenance(d), "",
           "Jensen-Shannon distance (base 2) of each observable, reference half A against the generated showers of "
           "half B's conditions; the floor row compares A with B itself (same sizes, same bins). Cells of 5 mm "
           "(10 mm where said), half-MIP cut. Training: "
           + ", ".join(f"{r['stage']} {r['step']:,} steps in {r['seconds'] / 60:.0f} min"
                       for r in {row["stage"]: row for row in d["train"] if row["stage"] != "calibration"}.values())
           + " (one thread, bf16 autocast). "
           f"Teacher: {d['teacher_steps']} Heun steps ({2 * d['teacher_steps'] - 1} passes, "
           f"{d.get('teacher_precision', 'fp32')}); student: one pass (fp32 unless said).", "",
           "| sample | " + " | ".join(names) + " | angle S all / top |", "|---" * (len(names) + 2) + "|"]  # fmt: skip
    for key in variants:
        row = q[key]
        cells = [f"{row['jsd'][n]['value']:.3f}" for n in names]
        angles = row["angles"]
        out.append(f"| {key} ({row['settings']['n_each']:,}) | " + " | ".join(cells)
                   + f" | {angles['all']['value']:.3f} / {angles['top']['value']:.3f} |")  # fmt: skip
        if key.startswith("student/") or key.startswith("fast-engine"):
            floor = [f"{row['jsd'][n]['floor']:.3f}" for n in names]
            out.append(f"| floor of {key.split('/', 1)[1]} | " + " | ".join(floor)
                       + f" | {angles['all']['floor']:.3f} / {angles['top']['floor']:.3f} |")  # fmt: skip
    out += ["", "Time per shower at 50 GeV on one thread, random angles, projection onto 5 mm cells and the "
            "half-MIP cut included (ms):", "", "| batch | student fp32 | student bf16 | teacher | fast engine |",
            "|---|---|---|---|---|"]  # fmt: skip
    timing = d["timing_50GeV_one_thread"]
    for batch, t in ((k, v) for k, v in timing.items() if isinstance(v, dict)):
        out.append(f"| {batch.removeprefix('batch_')} | {t['student_ms']:.2f} | {t.get('student_bf16_ms', float('nan')):.2f} | "
                   f"{t.get('teacher_ms', float('nan')):.2f} | {t['fast_engine_ms']:.2f} |")  # fmt: skip
    if timing.get("geant4_cpu_ms_50GeV"):
        out += ["", f"Geant4 engine at 50 GeV: {timing['geant4_cpu_ms_50GeV']:.0f} ms CPU per shower (one thread, its "
                "Python scorer included). The row fast-engine-vs-geant4 judges the fast engine (the training data) "
                "against 2,000 Geant4 showers at the same conditions (its floor: Geant4 half against half)."]  # fmt: skip
    out += [
        "",
        "Goals (issue 23): one step within 10% of the multi-step JSDs; every JSD below 0.05 inclusive; "
        "faster than the fast engine at 50 GeV and 100x faster than Geant4.",
        "",
    ]
    return out


def _correction_sections() -> list[str]:
    """Cheap simulation plus learned correction (issue 25): reweighting, refinement, the accounting."""
    out = []
    for path in sorted(RESULTS.glob("correction*.json")):
        out += _correction_section(json.loads(path.read_text()))
    return out + ([""] if out and out[-1] else []) + _reweight_overlap_section()


_REWEIGHTER = {"network": "high-level DNN", "boosted": "gradient-boosted trees on the high-level features"}


def _reweight_overlap_section() -> list[str]:
    """Where reweighting can correct the fast engine's cheap mode (issue 25), per spot factor and classifier."""
    path = RESULTS / "reweight_overlap.json"
    if not path.exists():
        return []
    d = json.loads(path.read_text())
    out = [f"### Where reweighting can correct a cheap simulation (ds2, fast engine, {d['n_showers']:,} showers a file)", "",
           *_provenance(d), "",
           "The cheap mode's spots at several factors of the nominal energy, each cheap file weighted toward a nominal "
           "file by each classifier (cross-fitted; the network Platt-calibrated, the trees' early-stopped log-odds as "
           "they are; per-energy normalised, clipped at 20 x the mean) "
           "and judged against an independent nominal file: the share of the high-level separation powers within 2x "
           "their floor (nominal half against half) and the judging classifier's AUC (cls-high, cpu preset, one run, "
           "weights in its loss and AUC). A weight is a density ratio: the further the cheap showers lie from the "
           "nominal ones, the fewer carry the sample (the effective fraction).", "",
           "| spot factor | classifier | AUC when fitting (per part) | effective fraction | clipped | within 2x floor | worst (S / floor) | AUC high, judged | fit s |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in d["rows"]:
        j = r["judged"]
        worst = ", ".join(f"{w['observable']} {w['ratio']:.1f}x" for w in j["worst"][:2])
        if r["classifier"] is None:
            out.append(f"| {r['spot_factor']:g} | unweighted | - | 100% | - | {j['within_2x_floor']:.1%} of {j['observables']} | "
                       f"{worst} | {j['auc_high']:.3f} | - |")  # fmt: skip
            continue
        out.append(f"| {r['spot_factor']:g} | {_REWEIGHTER[r['classifier']]} | {', '.join(f'{a:.3f}' for a in r['fit_auc'])} | "
                   f"{r['effective_fraction']:.0%} | {r['clipped_fraction']:.2%} | {j['within_2x_floor']:.1%} | {worst} | "
                   f"{j['auc_high']:.3f} | {r['fit_seconds']:.0f} |")  # fmt: skip
    half = d["n_showers"] // 2
    out += ["", "A weighted sample is as noisy as its effective number of showers n_eff, so its separation powers "
            f"carry noise of about (1 / n_eff + 1 / {d['n_showers']:,}) against the floor's 2 / {half:,}: with exact "
            f"weights that is 0.6x the floor at 70% effective and 1.9x at 15%. The goal's two halves (separation "
            "powers within 2x the floor, effective fraction at least 50%) hold together only where the cheap showers "
            "overlap the nominal ones."]  # fmt: skip
    return [*out, ""]


def _correction_section(d: dict) -> list[str]:
    rw = d["reweighting"]
    out = [f"## Correcting a cheap simulation: reweighting and refinement (ds2, fast engine, spots at {d['cheap_spot_factor']:g} x the energy, {d['n_showers']:,} showers a file)", "",
           *_provenance(d), "",
           f"Cheap mode: the fast engine's spots at {d['cheap_spot_factor']:g} times the energy (`--cheap`), paired "
           f"with the nominal file by seed. The reweighter ({_REWEIGHTER[rw.get('classifier', 'network')]}, cross-fitted, "
           f"{'its log-odds as they are' if rw.get('classifier') == 'boosted' else 'Platt-calibrated'}, clipped at "
           f"20 x the mean) is fitted on a nominal file against the cheap test file: effective sample size "
           f"{rw['effective_fraction']:.1%} of the count, {rw['clipped_fraction']:.2%} clipped, its classifier's AUC "
           f"{', '.join(f'{a:.3f}' for a in rw['classifier_auc'])} per part. The refiner (paired, "
           f"{d['refinement']['settings']['network']}, {d['refinement']['settings']['epochs']} epochs) is trained on "
           "the fitting pair and applied to the cheap test file. Every arm is judged against an independent nominal "
           "file (classifier: cpu preset, mean of the runs; separation powers beside the nominal half-vs-half floor). "
           "Goals (issue 25): reweighted cheap simulation with every high-level separation power within 2x its floor "
           "and an effective sample size of at least 50%; refined showers at AUC high <= 0.6; a surrogate's AUC "
           "brought down by reweighting (VAE from 0.95 below 0.75).", "",
           "| arm | AUC high | AUC low | FPD x1e3 (floor) | KPD x1e3 | separation powers within 2x floor | worst (S / floor) | hits per shower | hit-count concordance with the paired nominal |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in d["arms"].items():
        worst = ", ".join(f"{w['observable']} {w['ratio']:.0f}x" for w in row["worst_separation_over_floor"][:2])
        ccc = row.get("hits_concordance_with_paired_nominal")
        hits = "-" if row.get("hits_mean") is None else f"{row['hits_mean']:.0f}"
        floor = row.get("fpd_floor_x1e3")
        out.append(f"| {name.replace('_', ' ')} | {row['auc_high']:.3f} ± {row['auc_high_std']:.3f} | {row['auc_low']:.3f} | "
                   f"{row['fpd_x1e3']:.2f} ({'-' if floor is None else f'{floor:.2f}'}) | {row['kpd_x1e3']:.3f} | "
                   f"{row['separation_within_2x_floor']:.0%} of {row['n_high_level_observables']} | {worst} | "
                   f"{hits} | {'-' if ccc is None else f'{ccc:.3f}'} |")  # fmt: skip
    surrogates = {
        k: v for k, v in d.items() if isinstance(v, dict) and "effective_fraction" in v and k != "reweighting"
    }
    if surrogates:
        out += ["", "Surrogates sampled at the nominal test file's conditions and reweighted toward the nominal fitting file "
                "(cross-fitted like the cheap file): " + "; ".join(
                    f"{k} (`{v.get('run', k)}`): effective sample size {v['effective_fraction']:.0%}"
                    + (f", sampling {v['sample_command_ms_per_shower']:.1f} ms per shower (the `calo sample` command, start-up included)"
                       if v.get("sample_command_ms_per_shower") else "")
                    + (f", reweighter fitted in {v['reweighting_fit_seconds'] / 60:.0f} min" if v.get("reweighting_fit_seconds") else "")
                    for k, v in surrogates.items()) + ". A weight costs one classifier pass per shower once it is fitted."]  # fmt: skip
    g4 = d.get("geant4")
    if g4:
        nom, cheap = g4["nominal"], g4["cheap"]
        out += ["", f"Geant4 (ds2, {nom['energy_spectrum']}, {nom['n_showers']} showers each, one seed): production cut "
                f"{cheap['range_cut_mm']:g} mm against {nom['range_cut_mm']:g} mm: {cheap['cpu_seconds_per_shower']:.3f} "
                f"against {nom['cpu_seconds_per_shower']:.3f} CPU s per shower (speed-up {g4['speed_up']:.2f}x); hits per "
                f"shower {g4['hits_mean']['10']:.0f} against {g4['hits_mean']['07']:.0f}; classifier AUC high cheap vs "
                f"nominal {g4['auc_high_cheap_vs_nominal']:.3f} ± {g4['auc_high_std']:.3f}.", ""]  # fmt: skip
        out += ["| route | CPU s per shower | quality against nominal |", "|---|---|---|",
                f"| Geant4, nominal cut | {nom['cpu_seconds_per_shower']:.3f} | the reference |",
                f"| Geant4, 10 mm cut, uncorrected | {cheap['cpu_seconds_per_shower']:.3f} | AUC high {g4['auc_high_cheap_vs_nominal']:.3f} |",
                f"| + reweighting (weights once per shower) | {cheap['cpu_seconds_per_shower']:.3f} + classifier | effective sample "
                "size lost: the nominal statistics cost 1 / (effective fraction) more cheap showers |",
                f"| + refinement | {cheap['cpu_seconds_per_shower']:.3f} + {d['refinement']['ms_per_shower'] / 1e3:.4f} | as the refiner on the fast engine above |",
                "", f"Verdict: the cheap cut saves {1 - 1 / g4['speed_up']:.0%} of Geant4's CPU here, and its showers are "
                "not told apart from nominal ones at this sample size, so they need no correction; but a reweighting "
                f"pays only if its effective sample size exceeds {1 / g4['speed_up']:.0%} of the count (a weighted "
                "shower costs 1 / effective fraction showers). In this engine, with its data-free EM list, the production "
                "cut hardly changes the work: the saving has to come from elsewhere (a surrogate).", ""]  # fmt: skip
    return out


def _central(e: dict) -> str:
    """The resolution from the central 68% too, where the standard deviation is a rare leak's."""
    c = e.get("resolution_central")
    return f" (central 68%: {c['geant4']:.2%} / {c['fast']:.2%})" if c else ""


def _realism_sections() -> list[str]:
    """The fast engine against Geant4, before calibration (published GFlash coefficients) then after."""
    out = []
    runs = sorted(RESULTS.glob("realism_gap_*.json"), key=lambda p: "fitted" in p.name)
    for path in runs:
        d = json.loads(path.read_text())
        sp = d["spectrum"]
        out += [f"## Realism gap: the fast engine against Geant4 ({d['geometry']}; {d['calibration']})", "",
                *_provenance(d), "",
                "| electron energy | Geant4 showers | longitudinal profile, largest difference | radial profile, largest "
                "difference | resolution Geant4 / fast | stored E_tot / E_inc Geant4 / fast | zero voxels Geant4 / fast |",
                "|---|---|---|---|---|---|---|"]  # fmt: skip

        def profile(p: dict) -> str:
            return f"{p['value']:+.1%} ± {p['se']:.1%} ({p['bins_beyond_2se']} of {p['bins']} bins beyond 2 s.e.)"

        for energy, e in d["per_energy"].items():
            out.append(f"| {energy} | {e['showers']['geant4']:,} | {profile(e['longitudinal'])} | {profile(e['radial'])} | "
                       f"{e['resolution']['geant4']:.2%} / {e['resolution']['fast']:.2%}{_central(e)} | {e['response']['geant4']:.3f} / "
                       f"{e['response']['fast']:.3f} | {e['zero_voxels']['geant4']:.3f} / {e['zero_voxels']['fast']:.3f} |")  # fmt: skip
        worst = ", ".join(f"{k} {v:.3f}" for k, v, _ in sp["separation_largest"][:5])
        out += ["", "Profiles: the largest relative difference of the mean over the layers (radial bins) holding 1% or more "
                "of the energy, with its standard error (the fast engine's sample is 20,000 showers, so it is mostly "
                "Geant4's), and how many of those bins differ by more than two standard errors. The Geant4 files at fixed "
                f"energies are not those the engine was calibrated on. Over {sp['spectrum']} "
                f"({sp['showers_each']:,} showers each): high-level classifier AUC Geant4 vs fast engine "
                f"{sp['auc_high']:.3f} ± {sp['auc_high_std']:.3f}; median separation power {sp['separation_median']:.3f}, "
                f"largest {worst}. Goals after calibration (issue 21): profiles within 3% at every energy decade, "
                "resolution within 10%, AUC at most 0.75.", ""]  # fmt: skip
    calibration = _load("calibration_ds2")
    if calibration:
        c = calibration
        fitted = ", ".join(f"{k} {v:g}" for k, v in c["fitted"].items())
        out += ["## Calibration of the fast engine to Geant4 (ds2 stack; ds3 shares it)", "", *_provenance(c), "",
                f"Fitted (shipped in `simulate/detectors.py`): {fitted}. Targets: Geant4 electrons at "
                f"{', '.join(f'{e} ({n} showers)' for e, n in c['geant4_files'].items())}; the engine's mean profiles from "
                f"{c['engine_showers_per_energy']:,} showers per energy, in the bins holding at least "
                f"{c['share']:.1%} of the energy; loss {c['loss']['published']:.4f} -> {c['loss']['fitted']:.4f} "
                f"({c['iterations']} Nelder-Mead iterations).", "",
                "| electron energy | longitudinal, published / fitted | radial, published / fitted | resolution / Geant4's, "
                "published / fitted | response / Geant4's, published / fitted |", "|---|---|---|---|---|"]  # fmt: skip
        for energy, before in c["largest_relative_difference"]["published"].items():
            after = c["largest_relative_difference"]["fitted"][energy]
            out.append(f"| {energy} | {before['longitudinal']:.1%} / {after['longitudinal']:.1%} | {before['radial']:.1%} / "
                       f"{after['radial']:.1%} | {before['resolution_over_geant4']:.3f} / {after['resolution_over_geant4']:.3f} | "
                       f"{before['response_over_geant4']:.3f} / {after['response_over_geant4']:.3f} |")  # fmt: skip
        out += ["", "Largest differences of the engine's mean profiles (1,000 showers per energy) against Geant4's, in the "
                "fitted bins; resolution and response of whole simulated showers over Geant4's.", ""]  # fmt: skip
    spot = _load("calibration_ds2_spot")
    if spot:
        out += ["### The spot energy refitted (second stage alone)", "", *_provenance(spot), "",
                "Each shower's share of energy inside the binning is held at the median shower's (its profile fluctuations "
                "move energy, they do not lose it; simulate/simulator.py): the engine lost its spurious constant term and "
                "the spot energy, which sets the sampling term, was refitted to Geant4's resolution at every decade "
                f"including 1 TeV ({', '.join(f'{e} ({n} showers)' for e, n in spot['geant4_files'].items())}; "
                f"{spot['engine_showers_per_energy']} engine showers per energy), then the response scaled to Geant4's: "
                f"spot energy {spot['before']['spot_energy_mev']:g} -> {spot['fitted']['spot_energy_mev']:g} MeV, "
                f"response {spot['before']['nominal_response']:g} -> {spot['fitted']['nominal_response']:g}.", "",
                "| electron energy | Geant4 resolution | resolution / Geant4's, before / after | response / Geant4's, before / after |",
                "|---|---|---|---|"]  # fmt: skip
        for energy, res in spot["geant4_resolution"].items():
            a, b = spot["over_geant4"]["shipped"][energy], spot["over_geant4"]["refitted"][energy]
            out.append(f"| {energy} | {res:.2%} | {a['resolution']:.3f} / {b['resolution']:.3f} | "
                       f"{a['response']:.3f} / {b['response']:.3f} |")  # fmt: skip
        out += ["", "Before: the engine of the same commit with the spot energy and response as shipped until then (the "
                "containment already held); the realism gap above judges the result on other Geant4 files.", ""]  # fmt: skip
    tables = _load("profile_tables_ds2")
    if tables:
        t = tables
        files = ", ".join(f"{Path(p).name} ({n:,})" for p, n in t["geant4_files"].items())
        energies = t["energies_gev"]
        first, last = t["iterations"][0], t["iterations"][-1]
        out += ["## Profile tables of the fast engine (ds2 stack; ds3 shares it)", "", *_provenance(t), "",
                "What the GFlash coefficients leave over, tabulated at "
                f"{len(energies)} incident energies from {energies[0]:g} to {energies[-1]:g} GeV "
                "(`simulate/tables/w_si.json`, `simulate/profile_tables.py`): an energy added to each layer (a factor "
                "would scale each shower's fluctuations with its mean: it made the 100 GeV resolution a third worse) "
                "and a factor on each radial interval, interpolated in ln E. Fitted to Geant4 electrons: "
                f"{files}, by a roughness-penalised least-squares fit in ln E. Largest difference of the fitted means in "
                f"the bins with 1% of the energy: longitudinal {first['longitudinal']:.1%} -> {last['longitudinal']:.2%}, "
                f"radial {first['radial']:.1%} -> {last['radial']:.2%} (fit data); the realism gap above judges them "
                "on other Geant4 files.", ""]  # fmt: skip
    return out


def _fastsim_sections() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("geant4_fastsim_*.json")):
        d = json.loads(path.read_text())
        out += [f"## A surrogate inside Geant4 as its fast-simulation model ({d['geometry']}, {d['model']})", "",
                *_provenance(d), "", *([f"Note: {d['note']}.", ""] if d.get("note") else []),
                f"Surrogate: {d['model_trained_on']}. "
                "The same events in full Geant4 and with the surrogate as the G4VFastSimulationModel of the calorimeter's "
                "region (it takes the electron on entering; the surrogate runs on one CPU process beside Geant4).", "",
                "| electron energy | events | surrogate calls | full simulation, ms / event | fast simulation, ms / event "
                "| of which surrogate | speed-up |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in d["fixed"]:
            calls = "per event" if r["events_per_call"] == 1 else f"per {r['events_per_call']} events"
            out.append(f"| {r['energy']} | {r['n']} | {calls} | {r['ms_per_event_full']:.1f} | {r['ms_per_event_fast']:.2f} | "
                       f"{r['ms_per_event_surrogate']:.2f} | {r['speedup']:.0f}x |")  # fmt: skip
        sp = d["spectrum"]
        worst = ", ".join(f"{k} {v:.3f}" for k, v in sp["separation_largest"])
        out += ["", f"Over {sp['spectrum']} ({sp['n']:,} events, surrogate per {sp['events_per_call']} events): "
                f"{sp['speedup']:.0f}x; fast against full simulation: high-level classifier AUC {sp['auc_high']:.3f} ± "
                f"{sp['auc_high_std']:.3f}, FPD x 1e3 {sp['fpd_x1e3']:.1f}, KPD x 1e3 {sp['kpd_x1e3']:.2f}; largest "
                f"separation powers {worst}. Goal (issue 21): at least 100x faster per 100 GeV shower.", ""]  # fmt: skip
    return out


def _provenance(data: dict) -> list[str]:
    """The command and machine lines every section opens with."""
    return [f"Command: `{data['command']}`  ", f"Machine: {_machine(data)}; commit {data['commit']}, {data['date']}"]


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _model_label(data: dict) -> str:
    """The family, plus the variant tag of runs with changed settings (``model_<geometry>_<family>_<tag>``)."""
    tag = data["benchmark"].removeprefix(f"model_{data['geometry']}_{data['model']}").lstrip("_")
    return f"{data['model']} ({tag})" if tag else data["model"]


def _bf16_native(data: dict) -> bool:
    """Whether the run's CPU did bf16 natively. Not recorded before 2026-12-02: those machines ran
    bf16 faster than fp32, so natively."""
    return data["machine"].get("cpu_bf16", "native (inferred)") != "emulated"


def _machine(data: dict) -> str:
    m = data["machine"]
    bf16 = f"bf16 {m.get('cpu_bf16', 'native (inferred)')}" if _bf16_native(data) else "bf16 emulated (no AMX)"
    return f"{m['cpu']}, {m['cores']} cores, {bf16}, torch {m['torch']}" + (f", {m['cuda']}" if m.get("cuda") else "")


def _trained_on(data: dict) -> str:
    """Training precision and the CPU's bf16: epochs in a fixed budget depend on both."""
    return f"{data.get('train_precision', 'bf16')}, {'bf16 native' if _bf16_native(data) else 'no AMX'}"


def _threads(data: dict) -> str:
    """How many threads a run had, where recorded (runs with one thread shared the machine with another)."""
    if "threads" not in data:
        return ""
    if data["threads"] == 1:
        return ", 1 thread, beside another one-thread benchmark on the other core"
    return f", {data['threads']} threads"


def _selected(data: dict) -> str:
    """Which epoch's weights were judged, where it is not the last."""
    chosen = data.get("selected_epoch")
    return f" (weights of epoch {chosen}, the lowest validation loss)" if chosen and chosen != data["epochs"] else ""


def _pm(entry: dict, digits: int = 3) -> str:
    return f"{entry['value']:.{digits}f} ± {entry['error']:.{digits}f}"


def _published_rows(dataset: str, names: list[str]) -> list[str]:
    path = PUBLISHED / f"CaloChallenge_results_{dataset}_scalars.csv"
    if not path.exists():
        return []
    rows = []
    for row in csv.DictReader(path.open()):
        if row["submission name"] in names:
            rows.append(f"| {row['submission name']} (published, Geant4 data) | {row['binary cls low'][:6]} | {row['binary cls high'][:6]} | "
                        f"{float(row['FPD * 1e3']):.2f} | {row['time CPU 10000'][:6] or 'n/a'} |")  # fmt: skip
    return rows


def _model_sections() -> list[str]:
    """One section per trained-model benchmark run (the run log)."""
    out: list[str] = []
    for path in sorted(RESULTS.glob("model_*.json")):
        data = json.loads(path.read_text())
        out += [f"## Surrogate quality: `{_model_label(data)}` on {data['geometry']}", "",
                *_provenance(data), "",
                *([f"Note: {data['note']}", ""] if data.get("note") else []),
                f"Budget: {data['train_minutes_budget']} minutes of training ({data['train_precision']} autocast{_threads(data)}), which bought "
                f"{data['epochs']} epochs{_selected(data)} over {data['n_train']:,} training showers; judged against {data['n_reference']:,} reference showers "
                "(classifiers: `cpu` preset, 3 runs).", "",
                "| sampling precision | ms / shower (batch 10,000, CPU) | AUC low | AUC high | FPD x 1e3 (floor) | KPD x 1e3 | CFD layer (floor) | S(E_tot/E_inc) |",
                "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for precision, r in data["results"].items():
            out.append(
                f"| {precision} | {r['sampling_ms_per_shower_batch_10000']:.3f} | {r['auc_low']:.3f} ± {r['auc_low_std']:.3f} | "
                f"{r['auc_high']:.3f} ± {r['auc_high_std']:.3f} | {r['FPD x 1e3']['value']:.2f} ({r['FPD x 1e3']['floor']:.2f}) | "
                f"{_pm(r['KPD x 1e3'], 2)} | {r['CFD layer']['value']:.3f} ({r['CFD layer']['floor']:.3f}) | {r['separation_etot_einc']:.4f} |"
            )
        dataset = {"ds1-photons": "ds1_photons", "ds2": "ds2"}.get(data["geometry"])
        peers = PEERS.get(data["model"], PEERS["flow"])
        published = _published_rows(dataset, peers) if dataset else []
        if published:
            out += ["", "For scale, published CaloChallenge rows on the Geant4 data of the same geometry:", "",
                    "| model | AUC low | AUC high | FPD x 1e3 | ms / shower CPU, batch 10,000 |", "|---|---|---|---|---|", *published]  # fmt: skip
        out.append("")
    return out


def main() -> None:
    out = ["# Benchmarks", "",
           "Every figure below was measured by the command shown, on the machine shown, and is rendered from",
           "`benchmarks/results/*.json` by `python benchmarks/write_benchmarks_md.py`. Each row says its data: real "
           "Geant4 showers from the `geant4` engine (Geant4 11.4 with a data-free EM physics list, 1-100 GeV so far), "
           "or the built-in fast engine. Neither is the official CaloChallenge files (not downloadable here), so "
           "quality figures are not directly comparable with the published rows quoted beside them for scale.", ""]  # fmt: skip
    out += _answer_sections()
    out += _paraflow_sections()
    out += _correction_sections()
    out += _shipped_speed_sections()
    out += _few_step_sections()
    out += _scaling_sections()
    out += _ds3_sections()
    out += _points_sections()
    sim = _load("simulator")
    if sim:
        out += ["## Simulator throughput", "", *_provenance(sim), "",
                "| detector | showers | showers/s in memory | showers/s written to gzip HDF5 |", "|---|---|---|---|"]  # fmt: skip
        out += [
            f"| {k} | {v['n']} | {v['showers_per_s_in_memory']} | {v['showers_per_s_to_gzip_file']} |"
            for k, v in sim["results"].items()
        ]
        out += ["", "Goal (issue 2): at least 500 ds2 showers per second on the 2-core machine.", ""]
    for qs in (json.loads(p.read_text()) for p in sorted(RESULTS.glob("quickstart*.json"))):
        cls = qs["classifiers"].get("cls-high", {})
        out += [f"## The main job (`bash scripts/quickstart.sh`, {qs['machine']['cpu']}, bf16 {'native' if _bf16_native(qs) else 'emulated'})", "", f"Machine: {_machine(qs)}; commit {qs['commit']}, {qs['date']}", "",
                f"Wall time {qs['wall_seconds'] / 60:.1f} minutes ({qs['note']}). Steps (s): "
                + ", ".join(f"{k} {v:.0f}" for k, v in qs["step_seconds"].items()) + ".", "",
                f"{qs['n_showers']['reference']:,} showers judged; training budget {qs['train_config']['max_minutes']} min "
                f"({qs['train_config']['precision']}); sampling {qs['sampling_ms_per_shower']:.2f} ms per shower.", "",
                "| metric | value | floor |", "|---|---|---|",
                f"| classifier AUC high | {cls.get('auc', float('nan')):.4f} | ~0.5 |",
                f"| separation power E_tot/E_inc | {qs['separation_etot_einc']['value']:.4f} | {qs['separation_etot_einc'].get('floor', float('nan')):.4f} |"]  # fmt: skip
        out += [f"| {k} | {_pm(v, 3)} | {v['floor']:.3f} |" for k, v in qs["scalars"].items()]
        out += [
            "",
            "Five CPU minutes buy the shower energy and the longitudinal profile, not yet the fine structure",
            "(sparsity, lateral widths): the classifier still separates the samples. Longer training: see below.",
            "",
        ]
        if qs.get("compared"):
            out += ["The report's comparison with the shipped model (quick-look evaluation settings, the shipped model "
                    "on the first reference showers):", "", markdown_table(qs["compared"])]  # fmt: skip
    for geometry in ("ds2", "ds1-photons", "ds3"):
        ev = _load(f"evaluation_{geometry}")
        if not ev:
            continue
        same = ev["same_settings"]
        out += [f"## Evaluation speed and sanity ({geometry}, {ev['n_showers_each']:,} vs {ev['n_showers_each']:,} showers)", "",
                *_provenance(ev), "",
                "| step | seconds |", "|---|---|"]  # fmt: skip
        out += [f"| {k.removesuffix('_s').replace('_', ' ')} | {v} |" for k, v in ev["timings"].items()]
        out += ["", "Goal (issue 3): everything but the classifiers within 300 s for 100k vs 100k ds2 showers (378 s before",
                "this session's changes: KPD's Gram products in float32 with float64 sums, moving KPD by 1e-9 of its quoted",
                "error; CFD sums per series and column gathers with np.take; voxel histograms only where needed). Every",
                "metric runs twice (sample vs reference and the reference-half floor); FPD is now the largest part."]  # fmt: skip
        cls = ev["classifier_settings"]
        out += ["", f"Two simulator files of the same settings (seeds 1 and 2); classifier: hidden {cls['hidden']}, {cls['epochs']} epochs, "
                f"{cls['runs']} runs, at most {cls['max_per_class']} showers per class.", "",
                "| metric | generated vs reference | floor (reference half vs half) |", "|---|---|---|",
                f"| classifier AUC high | {same['auc_high']:.4f} ± {same['auc_high_std']:.4f} | ~0.5 |",
                f"| classifier AUC low | {same['auc_low']:.4f} ± {same['auc_low_std']:.4f} | ~0.5 |",
                f"| separation power E_tot/E_inc | {same['separation_etot_einc']:.4f} | {same['separation_etot_einc_floor']:.4f} |"]  # fmt: skip
        for key in ("FPD x 1e3", "KPD x 1e3", "CFD voxel", "CFD layer", "CFD group"):
            if key in same:
                out.append(f"| {key} | {_pm(same[key])} | {same[key]['floor']:.3f} |")
        out += ["", f"With the generated energies scaled by 1.05, the separation power of E_tot/E_inc rises to "
                f"{ev['scaled_by_1.05']['separation_etot_einc']:.3f}.", ""]  # fmt: skip
    out += _parity_sections()
    out += _geant4_sections()
    out += _realism_sections()
    out += _fastsim_sections()
    out += _pareto_sections()
    out += ["Every run behind these rows, with its command, budget, per-precision figures and notes: "
            "[benchmarks/results/RUNS.md](benchmarks/results/RUNS.md); how the ds2 diffusion set-up was found: "
            "[benchmarks/LOG.md](benchmarks/LOG.md).", ""]  # fmt: skip
    out += _speed_sections()
    out += _lever_sections()
    out += _distillation_sections()
    out += _ablation_sections()
    out += _reliability_sections()
    (ROOT / "BENCHMARKS.md").write_text("\n".join(out) + "\n")
    runs = ["# Runs", "", "One section per benchmark run, rendered from the JSON files beside this one by "
            "`python benchmarks/write_benchmarks_md.py`; the results page is BENCHMARKS.md.", ""]  # fmt: skip
    (RESULTS / "RUNS.md").write_text("\n".join(runs + _model_sections() + _steps_sections()) + "\n")
    print("wrote BENCHMARKS.md and benchmarks/results/RUNS.md")


if __name__ == "__main__":
    main()
