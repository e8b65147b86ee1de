"""Per-shower weights that make a modified sample (cheap simulation, a surrogate) look nominal.

The density ratio ``w(x) = p_nominal(x) / p_modified(x)`` is learned by a classifier trained to
tell nominal (label 1) from modified (label 0) showers with the two classes weighing alike: its
calibrated probability ``p`` gives ``w = p / (1 - p)`` (the likelihood-ratio trick; DCTR,
arXiv:1907.08209). Cross-fitted: the showers of both samples are cut into ``folds`` parts and
each modified shower's weight comes from the classifier trained without its part, so no weight
is judged on the showers that fitted it. A held-out fifth of the training parts stops the training
early and, for the network, calibrates it: Platt scaling of the logit (smooth in ``x``, unlike
isotonic steps, whose end plateaus would turn into the largest weights). The trees' log-odds,
fitted by the log-loss and stopped on that fifth, are used as they are: Platt scaling stretched
them, and the weighted cheap showers came out no closer to nominal on fewer effective showers
(benchmarks/LOG.md, 2026-12-07). The weights are normalised to mean 1 over the modified
sample, in bins of incident energy when the energies are known (:func:`normalise_per_energy`),
clipped at ``clip`` and normalised again; the clipped fraction is reported.

Inputs: the high-level features of the CaloChallenge classifier (``high``), the voxels over
the incident energy (``low``), or those as images for the residual 3D CNN (``cnn``, regular
geometries). Classifier: gradient-boosted trees (scikit-learn's histogram boosting, Friedman's
gradient boosting, Ann. Statist. 29 (2001) 1189) on the high-level features, a neural network
otherwise. On the high-level features of ds2 the trees estimate the ratio better: cheap showers
weighted by them are harder to tell from nominal ones (benchmarks/LOG.md, 2026-12-07); trees
need no scaling of features whose empty-layer values (``log10 1e-8``) lie far from the rest.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from calosurrogate.data import ShowerFile
from calosurrogate.devices import resolve_device
from calosurrogate.geometry import CylindricalGeometry, default_min_energy
from calosurrogate.metrics import ClassifierSettings, apply_threshold, compute_features, low_level_inputs
from calosurrogate.metrics.classifier import build_network, predict_logits, train_epoch
from calosurrogate.metrics.weights import effective_sample_size

INPUTS = ("high", "low", "cnn")
CLASSIFIERS = ("auto", "boosted", "network")


@dataclass(frozen=True)
class ReweightSettings:
    """The classifier behind the weights and what is done with its output.

    Attributes:
        inputs: ``"high"``, ``"low"`` or ``"cnn"`` (module docstring).
        classifier: ``"boosted"`` (gradient-boosted trees; not with ``cnn``), ``"network"``, or
            ``"auto"``: trees on ``high``, the network on ``low`` and ``cnn``.
        hidden, n_hidden_layers: Width and depth of the fully connected network.
        cnn_channels: First-stage channels of the image network (``cnn``).
        epochs, batch_size, learning_rate: Adam schedule of the network; the epoch with the lowest
            loss on the calibration part is kept.
        trees: Most boosting iterations (the calibration part stops them earlier).
        folds: Cross-fitting parts (at least 2).
        calibration_fraction: Share of the training parts held out for early stopping and the
            calibration.
        clip: Largest weight, in units of the mean weight.
        seed: Seed of the folds, the initialisation and the batches.
        device: ``"cpu"`` or ``"cuda"``.
    """

    inputs: str = "high"
    classifier: str = "auto"
    hidden: int = 256
    n_hidden_layers: int = 2
    cnn_channels: int = 8
    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 1e-3
    trees: int = 2000
    folds: int = 2
    calibration_fraction: float = 0.2
    clip: float = 20.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise ValueError(f"reweighting inputs must be one of {INPUTS}, got {self.inputs!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"reweighting classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        if self.classifier == "boosted" and self.inputs == "cnn":
            raise ValueError("boosted trees do not read images: with inputs cnn use the network classifier")
        if self.folds < 2:
            raise ValueError(f"reweighting needs at least 2 folds (cross-fitting), got {self.folds}")
        if not 0 < self.calibration_fraction < 1:
            raise ValueError(f"calibration_fraction must lie in (0, 1), got {self.calibration_fraction}")
        if self.clip <= 1:
            raise ValueError(f"clip is a multiple of the mean weight and must exceed 1, got {self.clip}")
        for name in ("hidden", "epochs", "batch_size", "cnn_channels", "trees"):
            if getattr(self, name) < 1:
                raise ValueError(f"reweighting {name} must be at least 1, got {getattr(self, name)}")

    @property
    def boosted(self) -> bool:
        """Whether the ratio comes from gradient-boosted trees."""
        return self.classifier == "boosted" or (self.classifier == "auto" and self.inputs == "high")


@dataclass
class Reweighting:
    """Weights of a modified sample.

    Attributes:
        weights: ``(N_modified,)``, mean 1.
        fold: ``(N_modified,)``: the part each shower belonged to (its weight came from the
            classifier trained on the other parts).
        clipped_fraction: Share of showers whose weight was clipped.
        effective_sample_size: ``(sum w)^2 / sum w^2``.
        auc: Per part, the calibrated classifier's ROC AUC of nominal against modified showers of
            that part (0.5: the samples look alike to it; before any weight is applied).
        settings: The settings, as a dict.
    """

    weights: np.ndarray
    fold: np.ndarray
    clipped_fraction: float
    effective_sample_size: float
    auc: list[float]
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The scalars, for JSON and the command line."""
        n = len(self.weights)
        return {
            "n_showers": n,
            "effective_sample_size": self.effective_sample_size,
            "effective_fraction": self.effective_sample_size / max(n, 1),
            "clipped_fraction": self.clipped_fraction,
            "max_weight": float(self.weights.max(initial=0.0)),
            "classifier_auc": self.auc,
            "settings": self.settings,
        }


def reweight_inputs(
    showers: np.ndarray,
    incident_energies: np.ndarray,
    geometry: CylindricalGeometry,
    inputs: str,
    min_energy: float | None = None,
) -> np.ndarray:
    """The classifier inputs of showers (MeV, ``(N, n_voxels)``) after the read-out threshold:
    ``(N, D)`` float32 (``high``: 362 columns on ds2; ``low``/``cnn``: ``1 + n_voxels``)."""
    threshold = default_min_energy(geometry) if min_energy is None else min_energy
    x = apply_threshold(showers, threshold)
    energies = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    if inputs == "high":
        return np.nan_to_num(compute_features(x, energies, geometry, None).classifier_inputs()).astype(np.float32)
    return low_level_inputs(x, energies).astype(np.float32)


def normalise_per_energy(weights: np.ndarray, incident_energies: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Weights divided by their mean in each of ``n_bins`` bins of ``log E_inc`` (equal counts).

    The two samples share their incident-energy spectrum, so the true ratio averages to 1 at every
    energy; an estimate does not where the samples barely overlap (a cheap simulation whose high-energy
    showers a classifier tells apart with certainty gets weights near 0 there, and the weighted
    sample's energy spectrum tilts toward low energies: the weighted hit count of a ds2 sample fell
    to a quarter). Normalising per energy keeps the spectrum and corrects the showers given their energy.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    log_e = np.log(np.asarray(incident_energies, dtype=np.float64).reshape(-1))
    edges = np.quantile(log_e, np.linspace(0, 1, n_bins + 1)[1:-1])
    which = np.searchsorted(edges, log_e, side="right")
    for b in np.unique(which):
        sel = which == b
        w[sel] /= max(w[sel].mean(), 1e-300)
    return w


def clip_weights(weights: np.ndarray, clip: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights normalised to mean 1 with none above ``clip`` times the mean of the clipped weights,
    and which were clipped.

    The bound is the fixed point ``c = clip * mean(min(w, c))``: a bound in units of the mean of
    the unclipped weights would follow the very outliers it is meant to cap.
    """
    w = np.asarray(weights, dtype=np.float64)
    bound = clip * float(np.median(w))
    for _ in range(200):  # the map is monotone and contracting near the fixed point
        new = clip * float(np.minimum(w, bound).mean())
        if abs(new - bound) <= 1e-12 * bound:
            break
        bound = new
    clipped = w > bound
    w = np.minimum(w, bound)
    return w / w.mean(), clipped


def _parts(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A part number in ``[0, folds)`` for each of ``n`` showers, balanced, in random order."""
    return rng.permutation(np.arange(n) % folds)


def _network(n_inputs: int, settings: ReweightSettings, image_shape: tuple[int, int, int] | None) -> torch.nn.Module:
    shape = ClassifierSettings(hidden=settings.hidden, n_hidden_layers=settings.n_hidden_layers,
                               cnn_channels=settings.cnn_channels)  # fmt: skip
    return build_network(n_inputs, shape, image_shape)


def _train_network(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, held: np.ndarray, settings: ReweightSettings, seed: int,
    image_shape: tuple[int, int, int] | None,
) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """The network on the rows not ``held``, the epoch with the lowest held-out loss kept; returns
    its logit of inputs."""
    torch.manual_seed(seed)
    device = resolve_device(settings.device)
    if image_shape is None:
        shift, scale = x.mean(0), x.std(0)
        scale = np.where(scale > 0, scale, 1.0)
    else:  # the image network reads energy fractions as they are
        shift, scale = np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)

    def standardised(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((rows - shift) / scale).astype(np.float32)).to(device)

    x_train, x_held = standardised(x[~held]), standardised(x[held])
    y_train, y_held = (torch.from_numpy(y[m].astype(np.float32)).to(device) for m in (~held, held))
    w_train, w_held = (torch.from_numpy(w[m].astype(np.float32)).to(device) for m in (~held, held))
    model = _network(x.shape[1], settings, image_shape).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state = np.inf, copy.deepcopy(model.state_dict())
    for _ in range(settings.epochs):
        train_epoch(model, optimiser, x_train, y_train, w_train, settings.batch_size, generator)
        logits = predict_logits(model, x_held)
        held_loss = float((F.binary_cross_entropy_with_logits(logits, y_held, reduction="none") * w_held).sum()
                          / w_held.sum())  # fmt: skip
        if held_loss < best_loss:
            best_loss, best_state = held_loss, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return lambda rows: predict_logits(model, standardised(rows)).double().cpu().numpy()


def _train_boosted(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, held: np.ndarray, settings: ReweightSettings, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Gradient-boosted trees on the rows not ``held``, stopped when the held-out loss stops
    falling; returns their log-odds of inputs. Slow learning and leaves of at least 100 showers:
    a weight then rests on many showers, not on a few that one tree set apart."""
    trees = HistGradientBoostingClassifier(max_iter=settings.trees, learning_rate=0.03, min_samples_leaf=100,
                                           early_stopping=True, n_iter_no_change=10, random_state=seed)  # fmt: skip
    trees.fit(x[~held], y[~held], sample_weight=w[~held], X_val=x[held], y_val=y[held], sample_weight_val=w[held])
    return lambda rows: trees.decision_function(rows).astype(np.float64)


def _fit_part(
    nominal: np.ndarray,
    modified: np.ndarray,
    settings: ReweightSettings,
    seed: int,
    image_shape: tuple[int, int, int] | None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Train one classifier on nominal (1) vs modified (0) inputs (and calibrate the network);
    returns ``ln(p / (1 - p))`` of inputs ``(N, D)``: the log density ratio nominal / modified."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([nominal, modified])
    y = np.concatenate([np.ones(len(nominal)), np.zeros(len(modified))])
    # each class weighs half, whatever the counts: then p / (1 - p) is the density ratio itself
    w = np.where(y == 1, 0.5 / len(nominal), 0.5 / len(modified)) * len(x)
    held = rng.random(len(x)) < settings.calibration_fraction
    if settings.boosted:
        return _train_boosted(x, y, w, held, settings, seed)
    score = _train_network(x, y, w, held, settings, seed, image_shape)
    platt = LogisticRegression(C=1e6).fit(score(x[held])[:, None], y[held], sample_weight=w[held])
    return lambda rows: platt.decision_function(score(rows)[:, None])


def reweight_samples(
    nominal: np.ndarray,
    modified: np.ndarray,
    settings: ReweightSettings | None = None,
    image_shape: tuple[int, int, int] | None = None,
    incident_energies: np.ndarray | None = None,
) -> Reweighting:
    """Cross-fitted weights of the ``modified`` sample toward the ``nominal`` one.

    Args:
        nominal: ``(N_nom, D)`` classifier inputs of the nominal showers.
        modified: ``(N_mod, D)`` inputs of the modified showers.
        settings: Classifier and clipping (default :class:`ReweightSettings`).
        image_shape: ``(L, A, R)`` for the image network (``inputs="cnn"``).
        incident_energies: ``(N_mod,)`` MeV of the modified showers: the weights are then
            normalised to mean 1 in bins of incident energy (:func:`normalise_per_energy`) before
            clipping.

    Raises:
        ValueError: If the widths differ or a part would hold fewer than 20 showers of a sample.
    """
    settings = settings or ReweightSettings()
    if nominal.shape[1] != modified.shape[1]:
        raise ValueError(f"reweighting inputs differ in width: {nominal.shape[1]} vs {modified.shape[1]}")
    smallest = min(len(nominal), len(modified)) // settings.folds
    if smallest < 20:
        raise ValueError(
            f"too few showers to reweight: {len(nominal)} nominal and {len(modified)} modified give {smallest} per "
            f"part with {settings.folds} folds; need at least 20"
        )
    rng = np.random.default_rng(settings.seed)
    nominal_part, modified_part = _parts(len(nominal), settings.folds, rng), _parts(len(modified), settings.folds, rng)
    log_w = np.zeros(len(modified))
    aucs = []
    for k in range(settings.folds):
        log_ratio = _fit_part(
            nominal[nominal_part != k], modified[modified_part != k], settings, settings.seed + 1 + k, image_shape
        )
        log_w[modified_part == k] = log_ratio(modified[modified_part == k])
        held_nominal = log_ratio(nominal[nominal_part == k])
        truth = np.r_[np.ones(len(held_nominal)), np.zeros(int((modified_part == k).sum()))]
        aucs.append(float(roc_auc_score(truth, np.r_[held_nominal, log_w[modified_part == k]])))
    weights = np.exp(log_w - log_w.max())  # shifted: no exp overflows
    if incident_energies is not None:
        weights = normalise_per_energy(weights, incident_energies)
    weights, clipped = clip_weights(weights, settings.clip)
    return Reweighting(
        weights=weights,
        fold=modified_part,
        clipped_fraction=float(clipped.mean()),
        effective_sample_size=effective_sample_size(weights),
        auc=aucs,
        settings=asdict(settings),
    )


def _read_inputs(
    path: Path, geometry: CylindricalGeometry, settings: ReweightSettings, max_showers: int | None, chunk: int = 5000
) -> tuple[np.ndarray, np.ndarray]:
    """The classifier inputs of a file's showers and their incident energies (MeV)."""
    with ShowerFile(path, geometry, negative="keep") as f:
        stop = f.n_showers if max_showers is None else min(f.n_showers, max_showers)
        parts = [
            (
                reweight_inputs(b.showers, b.incident_energies, geometry, settings.inputs),
                b.incident_energies.reshape(-1),
            )
            for b in f.iter_chunks(chunk, stop=stop)
        ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def reweight_files(
    nominal_path: str | os.PathLike[str],
    modified_path: str | os.PathLike[str],
    geometry: CylindricalGeometry,
    settings: ReweightSettings | None = None,
    max_showers: int | None = None,
) -> Reweighting:
    """:func:`reweight_samples` on two CaloChallenge files of ``geometry`` (the first
    ``max_showers`` of each, if given), the weights normalised per incident energy. The weights are
    those of the modified file's showers, in order.

    Raises:
        ShowerFileError: If a file does not fit the geometry or is malformed.
        ValueError: As :func:`reweight_samples`, or ``cnn`` on an irregular geometry.
    """
    settings = settings or ReweightSettings()
    image_shape = None
    if settings.inputs == "cnn":
        if not geometry.is_regular:
            raise ValueError(f"cnn inputs read showers as images and need every layer binned alike; {geometry.name} "
                             "is not: use high or low")  # fmt: skip
        image_shape = geometry.shape
    nominal, _ = _read_inputs(Path(nominal_path), geometry, settings, max_showers)
    modified, energies = _read_inputs(Path(modified_path), geometry, settings, max_showers)
    return reweight_samples(nominal, modified, settings, image_shape, incident_energies=energies)
