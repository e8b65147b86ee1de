"""Evaluation against the official code's metrics: values and times on the same files, same run.

The CaloChallenge evaluation computes FPD and KPD with jetnet (``jetnet.evaluation.fpd/kpd``)
and PRDC with the reference implementation of Naeem et al. (the ``prdc`` package). Both are
on PyPI, so this script times them beside ours on the same high-level features, in the same
process, one after the other. The official evaluate.py itself (histograms, classifiers) is not
on PyPI and is not copied here, so those groups are timed for us alone.

jetnet's top-level import pulls in packages its FPD and KPD never call (energyflow, coffea,
awkward, ...); they are replaced by empty modules so that only numpy, scipy, numba and torch
are needed. Install the official code beside the project, once:

    .venv/bin/pip install --target .official --no-deps jetnet==0.2.5 numba==0.68.1 llvmlite==0.50.0 prdc==0.2

Run: .venv/bin/python benchmarks/bench_parity.py --reference R.h5 --generated G.h5 [--official .official]
(the files of BENCHMARKS.md: ``calo simulate --geometry ds2 --n 50000 --seed 1`` and ``--seed 2``).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.geometry import get_geometry
from calosurrogate.metrics import fpd, kpd
from calosurrogate.metrics.prdc import prdc, precision_recall_density_coverage

UNUSED_BY_FPD_KPD = {"energyflow", "requests", "awkward", "coffea", "vector", "tables", "pandas"}


class _Empty(types.ModuleType):
    """A module whose every attribute, and every call's result, is another empty module: enough for
    what jetnet does with these packages when it is imported."""

    def __getattr__(self, name: str) -> _Empty:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Empty(f"{self.__name__}.{name}")

    def __call__(self, *args: object, **kwargs: object) -> _Empty:
        return _Empty(f"{self.__name__}()")


class _EmptyFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in UNUSED_BY_FPD_KPD:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Empty(spec.name)

    def exec_module(self, module) -> None:
        module.__path__ = []


def official_modules(folder: Path) -> tuple[types.ModuleType, types.ModuleType]:
    sys.path.insert(0, str(folder))
    sys.meta_path.insert(0, _EmptyFinder())
    import jetnet.evaluation
    import prdc as official_prdc

    return jetnet.evaluation, official_prdc


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--generated", type=Path, required=True)
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument(
        "--official", type=Path, default=Path(".official"), help="pip --target folder of the official code"
    )
    args = parser.parse_args()
    geometry = get_geometry(args.geometry)
    jet, official_prdc = official_modules(args.official)
    settings = EvaluationSettings(progress=False)
    fpd_kw = {"min_samples": settings.fpd_min_samples, "max_samples": settings.fpd_max_samples,
              "num_batches": settings.fpd_num_batches}  # fmt: skip
    kpd_kw = {"batch_size": settings.kpd_batch_size, "num_batches": settings.kpd_num_batches}
    rows: dict[str, dict] = {}

    with tempfile.TemporaryDirectory() as tmp:
        # a private copy of the reference: its floor cache starts empty and is not left behind
        reference = Path(tmp) / args.reference.name
        shutil.copy(args.reference, reference)
        # Our features and histograms (one streamed pass per file), then each distance group.
        result, seconds = timed(
            evaluate_files,
            reference,
            args.generated,
            geometry,
            EvaluationSettings(metrics=("histograms",), progress=False),
        )
        rows["features + histograms (separation power, with floors)"] = {"ours_s": seconds, "official_s": None}
        hist_only = seconds
        # every distance group with floors, first (computing floors) then again (floors from the cache)
        distances = EvaluationSettings(metrics=("fpd", "kpd", "prdc"), progress=False)
        _, first_s = timed(evaluate_files, reference, args.generated, geometry, distances)
        again, again_s = timed(evaluate_files, reference, args.generated, geometry, distances)
        assert again.provenance.get("floors_from_cache", {}).get("metrics") == ["fpd", "kpd", "prdc"]
        rows["FPD + KPD + PRDC with floors, first run (features included)"] = {"ours_s": first_s, "official_s": None}
        rows["FPD + KPD + PRDC, floors from the cache (features included)"] = {"ours_s": again_s, "official_s": None}
        del result

    # The same features as arrays, for metric-by-metric timing against the official functions.
    from calosurrogate.data import ShowerFile
    from calosurrogate.geometry import default_min_energy
    from calosurrogate.metrics import apply_threshold, compute_features
    from calosurrogate.metrics.features import HighLevelFeatures

    def features(path: Path) -> np.ndarray:
        parts = []
        with ShowerFile(path, geometry) as f:
            for batch in f.iter_chunks(5000):
                x = apply_threshold(batch.showers, default_min_energy(geometry))
                parts.append(compute_features(x, batch.incident_energies, geometry, None))
        return np.nan_to_num(HighLevelFeatures.concatenate(parts).classifier_inputs())

    x_ref, x_gen = features(args.reference), features(args.generated)
    ours_fpd, t_ours_fpd = timed(fpd, x_ref, x_gen, **fpd_kw)
    (off_fpd, off_fpd_err), t_off_fpd = timed(jet.fpd, x_ref, x_gen, **fpd_kw)
    ours_kpd, t_ours_kpd = timed(kpd, x_ref, x_gen, **kpd_kw)
    (off_kpd, off_kpd_err), t_off_kpd = timed(jet.kpd, x_ref, x_gen, **kpd_kw)
    # PRDC on one draw of the default size: the official function on the same normalised arrays
    from calosurrogate.metrics.fpd_kpd import normalise_features

    a, b = normalise_features(x_ref, x_gen)
    rng = np.random.default_rng(42)
    n = settings.prdc_sample_size
    a, b = a[np.sort(rng.choice(len(a), n, replace=False))], b[np.sort(rng.choice(len(b), n, replace=False))]
    ours_one, t_ours_prdc = timed(precision_recall_density_coverage, a, b, settings.prdc_nearest_k)
    off_one, t_off_prdc = timed(official_prdc.compute_prdc, a, b, settings.prdc_nearest_k)
    _, t_ours_prdc_all = timed(prdc, x_ref, x_gen, settings.prdc_nearest_k, n, settings.prdc_num_draws)

    rows["FPD (value only)"] = {"ours_s": t_ours_fpd, "official_s": t_off_fpd}
    rows["KPD (value only)"] = {"ours_s": t_ours_kpd, "official_s": t_off_kpd}
    rows[f"PRDC, one draw of {n:,} per set"] = {"ours_s": t_ours_prdc, "official_s": t_off_prdc}
    rows[f"PRDC, {settings.prdc_num_draws} draws (value only)"] = {"ours_s": t_ours_prdc_all, "official_s": None}
    # what the official evaluation spends on FPD + KPD (no floors) against ours with cached floors
    official_fpd_kpd = t_off_fpd + t_off_kpd
    ours_fpd_kpd_cached = t_ours_fpd + t_ours_kpd
    values = {
        "FPD x 1e3": {"ours": ours_fpd.value * 1e3, "ours_error": ours_fpd.error * 1e3,
                      "official": off_fpd * 1e3, "official_error": off_fpd_err * 1e3},
        "KPD x 1e3": {"ours": ours_kpd.value * 1e3, "ours_error": ours_kpd.error * 1e3,
                      "official": off_kpd * 1e3, "official_error": off_kpd_err * 1e3},
        **{f"PRDC {k}": {"ours": ours_one[k], "official": float(off_one[k]),
                         "difference": abs(ours_one[k] - float(off_one[k]))} for k in ours_one},
    }  # fmt: skip
    data = {
        "geometry": args.geometry, "n_showers_each": len(x_ref), "features": int(x_ref.shape[1]),
        "settings": {"fpd": fpd_kw, "kpd": kpd_kw, "prdc": {"nearest_k": settings.prdc_nearest_k, "sample_size": n,
                     "num_draws": settings.prdc_num_draws}},
        "official_code": {"fpd_kpd": f"jetnet {getattr(sys.modules.get('jetnet'), '__version__', '?')}",
                          "prdc": "prdc 0.2", "histograms_and_classifiers": "not on PyPI: not timed"},
        "timings": rows, "histogram_pass_s": hist_only,
        "fpd_plus_kpd": {"official_s": official_fpd_kpd, "ours_with_cached_floors_s": ours_fpd_kpd_cached,
                         "speed_up": round(official_fpd_kpd / ours_fpd_kpd_cached, 2)},
        "values": values,
    }  # fmt: skip
    print(data)
    print("wrote", write_result(f"parity_{args.geometry}", data,
                                f"python benchmarks/bench_parity.py --reference {args.reference.name} "
                                f"--generated {args.generated.name} --geometry {args.geometry}"))  # fmt: skip


if __name__ == "__main__":
    main()
