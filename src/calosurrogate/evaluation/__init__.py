"""Judge a generated file against a reference file: every metric, streamed, with its floor.

Files are read chunk by chunk: high-level features (a few hundred numbers per shower) are
kept, voxels are not, so a 100k-vs-100k dataset-3 pair fits in 24 GiB. The low-level
classifier inputs are the exception (they are the voxels): they are kept only when a
low-level classifier is asked for, for at most ``classifier.max_per_class`` showers.

Floors: where the reference holds enough showers, each metric is also computed for the
first half of the reference against its second half (the "Geant4 vs Geant4" floor). A
half-sized sample is noisier than the full one, so a floor is an upper estimate of the
metric's value for a perfect generator at full size. The costly floors (FPD, KPD, PRDC) are
kept beside the reference file, keyed by its content (:mod:`.floor_cache`), so a reference
pays for them once.
"""

from __future__ import annotations

import hashlib
import os
import platform
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from calosurrogate.data import ShowerFile, ShowerFileError
from calosurrogate.evaluation.floor_cache import FloorCache
from calosurrogate.geometry import CylindricalGeometry, default_min_energy
from calosurrogate.metrics import (
    ClassifierSettings,
    CorrelationAccumulator,
    HighLevelFeatures,
    HistogramPair,
    MetricValue,
    NormedFromLowLevel,
    apply_threshold,
    classifier_test,
    compute_features,
    feature_histograms,
    fpd,
    kpd,
    low_level_inputs,
    variant_pairs,
    variant_series,
)
from calosurrogate.metrics.cfd import VARIANTS, cfd_from_accumulators
from calosurrogate.metrics.prdc import prdc
from calosurrogate.metrics.response import incident_energy_bins, response_resolution
from calosurrogate.metrics.separation import histogram_counts, voxel_energy_bins, weighted_counts
from calosurrogate.metrics.weights import check_weights, effective_sample_size

ALL_METRICS = ("histograms", "fpd", "kpd", "prdc", "cfd", "cls-low", "cls-low-normed", "cls-high", "cls-cnn")
# metrics that read another metric's stored inputs (the normed ones computed from them batch by batch)
_INPUTS_OF = {"cls-cnn": "cls-low", "cls-low-normed": "cls-low"}
DEFAULT_METRICS = ("histograms", "fpd", "kpd", "prdc", "cfd", "cls-high")
MIN_FLOOR_SHOWERS = 1000


# Above this (one sample's low-level classifier inputs in float32, GB), "auto" holds them in bf16.
LOW_LEVEL_FLOAT32_LIMIT_GB = 2.0


@dataclass
class EvaluationSettings:
    """How to judge.

    Attributes:
        metrics: Which metrics to compute (see :data:`ALL_METRICS`).
        min_energy: Threshold in MeV (None: the dataset's).
        chunk_size: Showers per streamed block.
        classifier: Classifier network and schedule.
        fpd_min_samples, fpd_max_samples, fpd_num_batches: FPD settings (reference: 10k, 50k, 20).
        kpd_batch_size, kpd_num_batches: KPD settings (reference: 10k, 10).
        prdc_nearest_k, prdc_sample_size, prdc_num_draws: PRDC's k, showers per set and draw, and
            independent draws (:func:`calosurrogate.metrics.prdc.prdc`).
        cfd_bootstrap: Bootstrap replicas for the CFD errors.
        floors: Compute reference-half vs reference-half floors.
        floor_cache: Keep the FPD, KPD and PRDC floors beside the reference and reuse them.
        classifier_floor: Also train the classifiers for the floor (costly).
        on_count_mismatch: ``"subsample"`` (use the first min(N) showers of each, with a
            warning) or ``"error"``.
        max_showers: Use at most this many showers of each file.
        classifier_inputs: How the low-level classifier inputs are held in memory: ``"float32"``,
            ``"bfloat16"`` (half the memory, 8 bits of mantissa), or ``"auto"``: bf16 when one
            sample's inputs would exceed :data:`LOW_LEVEL_FLOAT32_LIMIT_GB` in float32 (ds3: 50,000
            showers x 40,501 inputs are 8.1 GB per sample). Results record which was used.
        progress: Show progress bars.
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    min_energy: float | None = None
    chunk_size: int = 5000
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings.cpu)
    fpd_min_samples: int = 10_000
    fpd_max_samples: int = 50_000
    fpd_num_batches: int = 20
    kpd_batch_size: int = 10_000
    kpd_num_batches: int = 10
    prdc_nearest_k: int = 5
    prdc_sample_size: int = 10_000
    prdc_num_draws: int = 5
    cfd_bootstrap: int = 20
    floors: bool = True
    floor_cache: bool = True
    classifier_floor: bool = False
    on_count_mismatch: str = "subsample"
    max_showers: int | None = None
    classifier_inputs: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.classifier_inputs not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"classifier_inputs must be auto, float32 or bfloat16, got {self.classifier_inputs!r}")
        unknown = set(self.metrics) - set(ALL_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {list(ALL_METRICS)}")
        if not self.metrics:
            raise ValueError(f"no metric asked for; choose from {list(ALL_METRICS)}")
        if self.on_count_mismatch not in ("subsample", "error"):
            raise ValueError("on_count_mismatch must be 'subsample' or 'error'")
        if self.max_showers is not None and self.max_showers < 1:
            raise ValueError(f"max_showers must be at least 1, got {self.max_showers}")

    @classmethod
    def fast(cls, **overrides: Any) -> EvaluationSettings:
        """Reduced sample sizes for quick looks (FPD 2k-10k x 5, KPD 2k x 10, PRDC 2k x 3, small classifier)."""
        base = {
            "fpd_min_samples": 2000, "fpd_max_samples": 10_000, "fpd_num_batches": 5, "kpd_batch_size": 2000,
            "prdc_sample_size": 2000, "prdc_num_draws": 3,
            "classifier": ClassifierSettings.cpu(epochs=10, max_per_class=20_000), "cfd_bootstrap": 10,
        }  # fmt: skip
        return cls(**{**base, **overrides})


@dataclass
class SampleSummary:
    """What one streamed pass over a file collected."""

    features: HighLevelFeatures
    mean_shower: np.ndarray
    max_voxel: float
    radial: dict[str, np.ndarray] | None  # mean radial energy density (MeV / mm^2) and its standard error
    cfd: dict[str, CorrelationAccumulator]
    cfd_halves: dict[str, tuple[CorrelationAccumulator, CorrelationAccumulator]]
    low_level: dict[str, torch.Tensor]  # classifier inputs (float32, or bf16 for large geometries)
    weights: np.ndarray | None = None  # per shower, when the sample is weighted


@dataclass
class EvaluationResult:
    """Every number (with error and floor), plus what the plots need."""

    geometry: str
    n_showers: dict[str, int]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    separation: dict[str, dict[str, Any]] = field(default_factory=dict)
    scalars: dict[str, dict[str, Any]] = field(default_factory=dict)
    classifiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    histograms: list[HistogramPair] = field(default_factory=list, repr=False)
    mean_showers: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    mean_layer_energy: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    correlation_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    response: dict[str, Any] = field(default_factory=dict, repr=False)
    mean_layer_energy_error: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    radial_profile: dict[str, dict[str, np.ndarray]] | None = field(default=None, repr=False)

    def to_json_dict(self) -> dict[str, Any]:
        """The numbers (not the arrays) as plain JSON-able data."""
        return {
            "geometry": self.geometry,
            "n_showers": self.n_showers,
            "settings": self.settings,
            "provenance": self.provenance,
            "scalars": self.scalars,
            "classifiers": self.classifiers,
            "separation_power": self.separation,
            "response": {k: np.asarray(v).tolist() if k == "edges_mev" else {n: np.asarray(a).tolist() for n, a in v.items()}
                         for k, v in self.response.items()},
            "warnings": self.warnings,
        }  # fmt: skip


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 24) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _metric_entry(value: MetricValue, floor: MetricValue | dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": value.value, "error": value.error, "settings": value.settings}
    if floor is not None:
        floor = floor.to_dict() if isinstance(floor, MetricValue) else floor
        entry["floor"] = floor["value"]
        entry["floor_error"] = floor["error"]
    return entry


class _Pass:
    """Accumulates one file's summary while its chunks stream by."""

    def __init__(
        self,
        geometry: CylindricalGeometry,
        settings: EvaluationSettings,
        min_energy: float,
        n_total: int,
        seed: int,
        voxel_bins: np.ndarray | None = None,
        voxels_only: bool = False,
        split_halves: bool = False,
        weights: np.ndarray | None = None,
    ) -> None:
        self.split_halves = split_halves
        self.voxel_bins = voxel_bins
        self.voxels_only = voxels_only
        self.weights = weights
        if weights is not None and split_halves:
            raise ValueError("a weighted sample is not split into halves: floors come from the reference")
        n_bins = 0 if voxel_bins is None else len(voxel_bins) - 1
        dtype = np.int64 if weights is None else np.float64
        self.voxel_counts = [np.zeros(n_bins, dtype=dtype) for _ in range(3)]  # all, first half, second half
        self.voxel_sumw2 = None if weights is None else np.zeros(n_bins)
        self.voxel_outside = 0.0
        self.geometry = geometry
        self.settings = settings
        self.min_energy = min_energy
        self.n_total = n_total
        self.features: list[HighLevelFeatures] = []
        self.sum_shower = np.zeros(geometry.n_voxels)
        n_r = geometry.layers[0].n_r if geometry.is_regular else 0
        self.radial_sums = (np.zeros(n_r), np.zeros(n_r))  # of the per-shower radial density and its square
        self.max_voxel = 0.0
        self.n_seen = 0
        want_cfd = "cfd" in settings.metrics
        self.pairs = {v: p for v in VARIANTS if want_cfd and (p := variant_pairs(v, geometry)) is not None}
        self.cfd = {
            v: CorrelationAccumulator(p, settings.cfd_bootstrap, seed + i)
            for i, (v, p) in enumerate(self.pairs.items())
        }
        self.halves = {
            v: (CorrelationAccumulator(p, settings.cfd_bootstrap, seed + 10 + i), CorrelationAccumulator(p, settings.cfd_bootstrap, seed + 20 + i))
            for i, (v, p) in enumerate(self.pairs.items())
        }  # fmt: skip
        cls_cap = settings.classifier.max_per_class
        self.low_cap = min(n_total, cls_cap) if cls_cap is not None else n_total
        # Stored once per input kind: the image classifier reads the low-level inputs as images.
        kinds = {_INPUTS_OF.get(m, m) for m in settings.metrics} & {"cls-low"}
        # filled in place as the showers stream by: one table, no list of chunks to join
        width = geometry.n_voxels + 1
        dtype = settings.classifier_inputs
        if dtype == "auto":
            dtype = "bfloat16" if self.low_cap * width * 4 > LOW_LEVEL_FLOAT32_LIMIT_GB * 1e9 else "float32"
        self.low_dtype = getattr(torch, dtype)
        self.low: dict[str, torch.Tensor | None] = dict.fromkeys(sorted(kinds))

    def update(self, energies: np.ndarray, showers: np.ndarray) -> None:
        x = apply_threshold(showers, self.min_energy)
        half = self.n_total // 2
        first = np.arange(self.n_seen, self.n_seen + len(x)) < half
        w = None if self.weights is None else self.weights[self.n_seen : self.n_seen + len(x)]
        if self.voxel_bins is not None and w is not None:
            hit = x > 0
            sums, squares, outside = weighted_counts(x[hit], self.voxel_bins, np.broadcast_to(w[:, None], x.shape)[hit])
            self.voxel_counts[0] += sums
            self.voxel_sumw2 += squares
            self.voxel_outside += outside
        elif self.voxel_bins is not None:
            # Zero voxels are below the threshold by definition, not "outside the range".
            if self.split_halves:  # the full histogram is the sum of the halves
                for k, sel in ((1, first), (2, ~first)):
                    part = x[sel]
                    counts, outside = histogram_counts(part[part > 0], self.voxel_bins)
                    self.voxel_counts[k] += counts
                    self.voxel_counts[0] += counts
                    self.voxel_outside += outside
            else:
                counts, outside = histogram_counts(x[x > 0], self.voxel_bins)
                self.voxel_counts[0] += counts
                self.voxel_outside += outside
        if self.voxels_only:
            self.n_seen += len(x)
            return
        self.features.append(compute_features(x, energies, self.geometry, None))
        weight = np.ones(len(x)) if w is None else w
        self.sum_shower += weight @ x
        if self.geometry.is_regular:
            density = (x / self.geometry.voxel_areas).reshape(len(x), *self.geometry.shape).sum(axis=1).mean(axis=1)
            self.radial_sums[0][:] += weight @ density  # the arrays in place: the pair is a tuple
            self.radial_sums[1][:] += weight @ density**2
        self.max_voxel = max(self.max_voxel, float(x.max(initial=0.0)))
        for variant, acc in self.cfd.items():
            series = variant_series(variant, x, self.geometry)
            if not acc.is_centred:
                shift = series.mean(axis=0)
                acc.set_shift(shift)
                for h in self.halves[variant]:
                    h.set_shift(shift)
            if self.split_halves:
                # The full sample is the merge of its halves: accumulate each shower once.
                if first.any():
                    self.halves[variant][0].update(series[first])
                if (~first).any():
                    self.halves[variant][1].update(series[~first])
            else:
                acc.update(series, w)
        room = self.low_cap - self.n_seen
        if room > 0:
            take = slice(0, min(room, len(x)))
            for kind in self.low:
                inputs = low_level_inputs(x[take], energies[take])
                if self.low[kind] is None:
                    self.low[kind] = torch.empty((self.low_cap, inputs.shape[1]), dtype=self.low_dtype)
                block = torch.from_numpy(inputs.astype(np.float32))
                self.low[kind][self.n_seen : self.n_seen + len(inputs)] = block.to(self.low_dtype)
        self.n_seen += len(x)

    def summary(self) -> SampleSummary:
        cfd = {v: h[0].merge(h[1]) for v, h in self.halves.items()} if self.split_halves else self.cfd
        used = None if self.weights is None else self.weights[: self.n_seen]
        n = max(self.n_seen, 1) if used is None else used.sum()
        n_eff = n if used is None else effective_sample_size(used)
        radial = None
        if self.geometry.is_regular:
            mean = self.radial_sums[0] / n
            variance = np.maximum(self.radial_sums[1] / n - mean**2, 0.0)
            radial = {"mean": mean, "error": np.sqrt(variance / max(n_eff - 1, 1))}
        return SampleSummary(
            features=HighLevelFeatures.concatenate(self.features),
            mean_shower=self.sum_shower / n,
            max_voxel=self.max_voxel,
            radial=radial,
            cfd=cfd,
            cfd_halves=self.halves,
            low_level={k: v[: min(self.n_seen, self.low_cap)] for k, v in self.low.items() if v is not None},
            weights=used,
        )


def _stream_into(acc: _Pass, f: ShowerFile, n: int, settings: EvaluationSettings, desc: str) -> None:
    chunks = f.iter_chunks(settings.chunk_size, stop=n)
    for batch in tqdm(chunks, total=-(-n // settings.chunk_size), desc=desc, disable=not settings.progress):
        acc.update(batch.incident_energies, batch.showers)


def evaluate_files(
    reference_path: str | os.PathLike[str],
    generated_path: str | os.PathLike[str],
    geometry: CylindricalGeometry,
    settings: EvaluationSettings | None = None,
    generated_weights: np.ndarray | None = None,
) -> EvaluationResult:
    """Compute every selected metric of a generated file against a reference file.

    Args:
        reference_path: CaloChallenge HDF5 file of reference (Geant4 or simulator) showers.
        generated_path: File of generated showers, same geometry.
        geometry: The binning both files use.
        settings: What to compute and how (default :class:`EvaluationSettings`).
        generated_weights: One weight per shower of the generated file (a reweighting's): every
            histogram, mean, correlation, distance and classifier then judges the weighted sample
            (FPD and KPD draw their bootstrap by weight; PRDC weighs precision and density), and
            the effective sample size ``(sum w)^2 / sum w^2`` is reported beside the count.

    Raises:
        ShowerFileError: If a file does not fit the geometry or is malformed.
        ValueError: On unequal shower counts with ``on_count_mismatch="error"``, or too few
            showers for the classifier split.
    """
    settings = settings or EvaluationSettings()
    reference_path, generated_path = Path(reference_path), Path(generated_path)
    if "cls-cnn" in settings.metrics and not geometry.is_regular:
        raise ValueError(
            f"cls-cnn reads showers as (layer, alpha, r) images and needs every layer binned alike; "
            f"{geometry.name} is not: use cls-low or cls-high"
        )
    min_energy = settings.min_energy if settings.min_energy is not None else default_min_energy(geometry)
    notes: list[str] = []
    with (
        ShowerFile(reference_path, geometry, negative="keep") as ref,
        ShowerFile(generated_path, geometry, negative="keep") as gen,
    ):
        n_ref, n_gen = ref.n_showers, gen.n_showers
        for path, count in ((reference_path, n_ref), (generated_path, n_gen)):
            if count == 0:
                raise ShowerFileError(path, "showers", "holds no showers; there is nothing to judge")
        n = min(n_ref, n_gen)
        if settings.max_showers is not None:
            n = min(n, settings.max_showers)
        weights = None
        if generated_weights is not None:
            given = np.asarray(generated_weights, dtype=np.float64).reshape(-1)
            if len(given) < n:
                raise ValueError(f"{len(given)} weights for {generated_path.name}, of which {n} showers are judged: "
                                 "one weight per shower is needed")  # fmt: skip
            weights = check_weights(given[:n], n, f"weights of {generated_path.name}")
        if n_ref != n_gen:
            message = (
                f"{reference_path.name} has {n_ref} showers and {generated_path.name} {n_gen}; "
                f"using the first {n} of each"
            )
            if settings.on_count_mismatch == "error":
                raise ValueError(
                    message + " is refused (on_count_mismatch='error'); pass equal files or allow subsampling"
                )
            warnings.warn(message, stacklevel=2)
            notes.append(message)
        want_voxels = "histograms" in settings.metrics
        ref_pass = _Pass(geometry, settings, min_energy, n, 100, split_halves=settings.floors)
        _stream_into(ref_pass, ref, n, settings, "features reference")
        ref_sum = ref_pass.summary()
        voxel_bins = voxel_energy_bins(min_energy, ref_sum.max_voxel) if want_voxels else None
        # The generated file's voxel histogram fills during its feature pass; only the reference,
        # whose maximum sets the bins, is read a second time.
        gen_pass = _Pass(geometry, settings, min_energy, n, 200, voxel_bins=voxel_bins, weights=weights)
        _stream_into(gen_pass, gen, n, settings, "features generated")
        gen_sum = gen_pass.summary()
        voxel_counts: dict[str, np.ndarray] = {}
        voxel_outside: dict[str, int] = {}
        if voxel_bins is not None:
            ref_voxels = _Pass(
                geometry,
                settings,
                min_energy,
                n,
                300,
                voxel_bins=voxel_bins,
                voxels_only=True,
                split_halves=settings.floors,
            )
            _stream_into(ref_voxels, ref, n, settings, "voxels reference")
            voxel_counts["reference"], voxel_counts["half0"], voxel_counts["half1"] = ref_voxels.voxel_counts
            voxel_outside["reference"] = ref_voxels.voxel_outside
            voxel_counts["generated"] = gen_pass.voxel_counts[0]
            voxel_outside["generated"] = gen_pass.voxel_outside
            if gen_pass.voxel_sumw2 is not None:
                voxel_counts["generated_sumw2"] = gen_pass.voxel_sumw2

    provenance = {
        "reference": {"path": str(reference_path), "sha256": file_sha256(reference_path), "n_showers": n_ref},
        "generated": {"path": str(generated_path), "sha256": file_sha256(generated_path), "n_showers": n_gen},
        "versions": _versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    settings_dict = asdict(settings)
    settings_dict["min_energy"] = min_energy
    counts: dict[str, float] = {"reference": n, "generated": n}
    if weights is not None:
        counts["generated_effective"] = effective_sample_size(weights)
        settings_dict["generated_weights"] = "per-shower weights of the generated file"
    result = EvaluationResult(geometry.name, counts, settings_dict, provenance, warnings=notes)
    do_floor = settings.floors and n >= MIN_FLOOR_SHOWERS
    cache = None
    if do_floor and settings.floor_cache:
        context = {"n_showers": n, "min_energy": min_energy}
        cache = FloorCache(reference_path, provenance["reference"]["sha256"], context)
    if "histograms" in settings.metrics:
        _add_separation(
            result, geometry, ref_sum, gen_sum, min_energy, do_floor, voxel_bins, voxel_counts, voxel_outside
        )
    high_level = None
    if any(m in settings.metrics for m in ("fpd", "kpd", "prdc", "cls-high")):
        high_level = tuple(np.nan_to_num(s.features.classifier_inputs()) for s in (ref_sum, gen_sum))
        _add_distances(result, settings, *high_level, do_floor, cache, gen_sum.weights)
    if cache is not None and cache.hits:
        result.provenance["floors_from_cache"] = {"file": str(cache.path), "metrics": cache.hits}
    _add_cfd(result, ref_sum, gen_sum, do_floor)
    _add_classifiers(result, settings, geometry, ref_sum, gen_sum, high_level, do_floor)
    edges = incident_energy_bins(ref_sum.features.incident_energy)
    result.response = {"edges_mev": edges} | {
        name: response_resolution(s.features.incident_energy, s.features.e_tot, edges, s.weights)
        for name, s in (("reference", ref_sum), ("generated", gen_sum))
    }
    result.mean_showers = {"reference": ref_sum.mean_shower, "generated": gen_sum.mean_shower}
    layer_means = {name: _mean_and_error(s.features.e_layer, s.weights) for name, s in
                   (("reference", ref_sum), ("generated", gen_sum))}  # fmt: skip
    result.mean_layer_energy = {name: mean for name, (mean, _) in layer_means.items()}
    result.mean_layer_energy_error = {name: error for name, (_, error) in layer_means.items()}
    if ref_sum.radial is not None and gen_sum.radial is not None:
        result.radial_profile = {"reference": ref_sum.radial, "generated": gen_sum.radial}
    return result


def _mean_and_error(values: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Column means of ``(N, K)`` values and their standard errors, weighted by ``weights`` if given."""
    if weights is None:
        return values.mean(0), values.std(0, ddof=1) / np.sqrt(max(len(values), 1))
    mean = weights @ values / weights.sum()
    std = np.sqrt(weights @ (values - mean) ** 2 / weights.sum())
    return mean, std / np.sqrt(max(effective_sample_size(weights), 1.0))


def _add_separation(
    result: EvaluationResult, geometry: CylindricalGeometry, ref_sum: SampleSummary, gen_sum: SampleSummary,
    min_energy: float, do_floor: bool, voxel_bins: np.ndarray | None, voxel_counts: dict[str, np.ndarray],
    voxel_outside: dict[str, int],
) -> None:  # fmt: skip
    """Histograms of every high-level feature (and the pooled voxel energies) with their separation powers."""
    ref_f, gen_f = ref_sum.features, gen_sum.features
    n = len(ref_f.e_tot)
    half_a, half_b = ref_f[: n // 2], ref_f[n // 2 :]
    pairs = feature_histograms(geometry, ref_f, gen_f, min_energy, gen_sum.weights)
    floor_pairs = {p.key: p for p in feature_histograms(geometry, half_a, half_b, min_energy)} if do_floor else {}
    if voxel_bins is not None:
        pairs.append(
            HistogramPair("voxel_energy", "voxel energy [MeV]", voxel_bins, voxel_counts["reference"], voxel_counts["generated"],
                          voxel_outside["reference"], voxel_outside["generated"], log_x=True,
                          generated_sumw2=voxel_counts.get("generated_sumw2"))
        )  # fmt: skip
        if do_floor:
            floor_pairs["voxel_energy"] = HistogramPair(
                "voxel_energy", "", voxel_bins, voxel_counts["half0"], voxel_counts["half1"]
            )
    result.histograms = pairs
    for pair in pairs:
        s = pair.separation_power()
        floor = floor_pairs[pair.key].separation_power() if pair.key in floor_pairs else None
        entry = _metric_entry(s, floor)
        entry.update({"label": pair.label, "reference_outside": pair.reference_outside,
                      "generated_outside": pair.generated_outside})  # fmt: skip
        result.separation[pair.key] = entry
    result.warnings += _outside_warnings(pairs)


def _add_distances(
    result: EvaluationResult, settings: EvaluationSettings, x_ref: np.ndarray, x_gen: np.ndarray, do_floor: bool,
    cache: FloorCache | None, weights: np.ndarray | None = None,
) -> None:  # fmt: skip
    """FPD, KPD and PRDC on the high-level features, each beside its floor (the reference's halves)."""
    half = len(x_ref) // 2
    x_a, x_b = x_ref[:half], x_ref[half:]

    def floor_of(metric: str, kwargs: dict[str, Any], compute: Any) -> Any:
        if not do_floor:
            return None
        if cache is None:
            return compute()
        return cache.get_or_compute(metric, kwargs, compute)

    fpd_kw = {"min_samples": settings.fpd_min_samples, "max_samples": settings.fpd_max_samples,
              "num_batches": settings.fpd_num_batches}  # fmt: skip
    kpd_kw = {"batch_size": settings.kpd_batch_size, "num_batches": settings.kpd_num_batches}
    prdc_kw = {"nearest_k": settings.prdc_nearest_k, "sample_size": settings.prdc_sample_size,
               "num_draws": settings.prdc_num_draws}  # fmt: skip
    for metric, function, kwargs in (("fpd", fpd, fpd_kw), ("kpd", kpd, kpd_kw)):
        if metric not in settings.metrics:
            continue
        value = function(x_ref, x_gen, **kwargs, generated_weights=weights).scaled(1e3, " x 1e3")
        floor = floor_of(metric, kwargs, lambda f=function, k=kwargs: f(x_a, x_b, **k).scaled(1e3, " x 1e3").to_dict())
        result.scalars[f"{metric.upper()} x 1e3"] = _metric_entry(value, floor)
    if "prdc" in settings.metrics:
        values = prdc(x_ref, x_gen, **prdc_kw, generated_weights=weights)
        floors = floor_of("prdc", prdc_kw, lambda: {k: v.to_dict() for k, v in prdc(x_a, x_b, **prdc_kw).items()})
        for name, value in values.items():
            entry = _metric_entry(value, None if floors is None else floors[name])
            # density sits near its floor from either side; a shortfall of the others is what counts
            entry["direction"] = "closer" if name == "density" else "higher"
            result.scalars[f"PRDC {name}"] = entry


def _add_cfd(result: EvaluationResult, ref_sum: SampleSummary, gen_sum: SampleSummary, do_floor: bool) -> None:
    """CFD of each variant the passes accumulated, with its floor and both correlation maps."""
    for variant, acc in ref_sum.cfd.items():
        value = cfd_from_accumulators(acc, gen_sum.cfd[variant])
        floor = cfd_from_accumulators(*ref_sum.cfd_halves[variant]) if do_floor else None
        result.scalars[f"CFD {variant}"] = _metric_entry(value, floor)
        result.correlation_maps[variant] = {
            "reference": acc.correlation_map(),
            "generated": gen_sum.cfd[variant].correlation_map(),
        }


def _add_classifiers(
    result: EvaluationResult, settings: EvaluationSettings, geometry: CylindricalGeometry, ref_sum: SampleSummary,
    gen_sum: SampleSummary, high_level: tuple[np.ndarray, np.ndarray] | None, do_floor: bool,
) -> None:  # fmt: skip
    """Each classifier test asked for (optionally with its floor)."""
    for kind in ("cls-low", "cls-low-normed", "cls-high", "cls-cnn"):
        if kind not in settings.metrics:
            continue
        if kind == "cls-high":
            assert high_level is not None
            ref_in, gen_in = high_level
        else:
            stored = _INPUTS_OF.get(kind, kind)
            ref_in, gen_in = ref_sum.low_level[stored], gen_sum.low_level[stored]
        image_shape = geometry.shape if kind == "cls-cnn" else None
        transform = NormedFromLowLevel(geometry) if kind == "cls-low-normed" else None
        weights = None if gen_sum.weights is None else gen_sum.weights[: len(gen_in)]
        res = classifier_test(gen_in, ref_in, settings.classifier, kind.removeprefix("cls-"), image_shape, weights,
                              transform)  # fmt: skip
        entry = res.to_dict()
        if settings.classifier_floor and do_floor:
            half = len(ref_in) // 2
            floor = classifier_test(ref_in[:half], ref_in[half:], settings.classifier, kind, image_shape,
                                    transform=transform)  # fmt: skip
            entry["floor"], entry["floor_std"] = floor.auc, floor.auc_std
        result.classifiers[kind] = entry


def _outside_warnings(pairs: list[HistogramPair], tolerance: float = 0.002, dropped: float = 0.01) -> list[str]:
    """Warnings naming the observables whose generated entries fall outside the histogram range markedly
    more often than the reference's, and those that drop more than ``dropped`` of either sample's
    entries (a log-binned layer energy drops the showers with an empty layer)."""
    lost = []
    for pair in pairs:
        frac_gen = pair.generated_outside / max(pair.generated.sum() + pair.generated_outside, 1)
        frac_ref = pair.reference_outside / max(pair.reference.sum() + pair.reference_outside, 1)
        if max(frac_gen, frac_ref) > dropped:
            lost.append((max(frac_gen, frac_ref), pair.key, frac_ref, frac_gen))
    notes = []
    if lost:
        lost.sort(reverse=True)
        worst = ", ".join(
            f"{key} ({fr:.1%} of the reference, {fg:.1%} of the generated)" for _, key, fr, fg in lost[:5]
        )
        notes.append(f"{len(lost)} observable(s) leave more than {dropped:.0%} of a sample's entries outside the histogram "
                     f"range, where neither the plots nor the separation power see them; most: {worst}")  # fmt: skip
    flagged = []
    for pair in pairs:
        n_gen = pair.generated.sum() + pair.generated_outside
        n_ref = pair.reference.sum() + pair.reference_outside
        frac_gen = pair.generated_outside / max(n_gen, 1)
        frac_ref = pair.reference_outside / max(n_ref, 1)
        if frac_gen > max(2 * frac_ref, tolerance):
            flagged.append((frac_gen - frac_ref, pair.key, frac_gen, frac_ref))
    if not flagged:
        return notes
    flagged.sort(reverse=True)
    worst = ", ".join(f"{key} ({fg:.1%} vs {fr:.1%})" for _, key, fg, fr in flagged[:5])
    return [
        f"{len(flagged)} observable(s) have more generated than reference entries outside the histogram range "
        f"(dropped before the separation power); worst: {worst}",
        *notes,
    ]


def _versions() -> dict[str, str]:
    import h5py
    import scipy
    import sklearn
    import torch

    from calosurrogate import __version__

    return {
        "calosurrogate": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__, "torch": torch.__version__, "h5py": h5py.__version__,
        "python": platform.python_version(),
    }  # fmt: skip
