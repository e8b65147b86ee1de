"""The classifier test: can a network tell generated from reference showers?

Reference protocol (CaloChallenge 2022, arXiv:2410.21611; spec section 6): label generated 0
and reference 1, equal numbers of each; per class a 60 / 20 / 20 % train / test / validation
split; a fully connected network ``Linear(in, H), LeakyReLU, [Linear(H, H), LeakyReLU] x 2,
Linear(H, 1)`` trained with BCE-with-logits and Adam; keep the epoch with the best test
accuracy; calibrate its probabilities on the test split with isotonic regression (clipped to
``[1e-6, 1 - 1e-6]``); on the validation split report the ROC AUC and
``JSD = (ln 2 - BCE) / ln 2``. Repeated with independent seeds: mean and spread.

For regular geometries (ds2, ds3) the reference also trains a 3D ResNet on the shower images;
:class:`ShowerImageCNN` is a small residual 3D CNN in that role (cylindrical padding, global
pooling; its size is a setting), fed the low-level inputs.

The reference network (H = 2048, 50 epochs) is heavy on a CPU; ``ClassifierSettings.cpu()``
is the documented reduced setting, and every result says which settings it used.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from calosurrogate.devices import resolve_device
from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.layers import CylindricalConv3d

MIN_PER_CLASS = 25


@dataclass(frozen=True)
class ClassifierSettings:
    """Network size and training schedule of the classifier test.

    Attributes:
        hidden: Width H of the hidden layers (reference: 2048).
        n_hidden_layers: Number of ``Linear(H, H)`` blocks after the input layer (reference: 2).
        epochs: Training epochs (reference: 50).
        batch_size: Minibatch size (reference: 1000).
        learning_rate: Adam learning rate (reference: 2e-4).
        split: Train / test / validation fractions per class.
        runs: Independent trainings to average.
        seed: Seed of the first run (run k uses seed + k).
        device: ``"cpu"`` or ``"cuda"``.
        max_per_class: Use at most this many showers per class (None: all).
        cnn_channels: Channels of the image classifier's first stage (doubled at each of its two
            downsamplings).
    """

    hidden: int = 2048
    n_hidden_layers: int = 2
    epochs: int = 50
    batch_size: int = 1000
    learning_rate: float = 2e-4
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    runs: int = 1
    seed: int = 0
    device: str = "cpu"
    max_per_class: int | None = None
    cnn_channels: int = 8

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "batch_size", "runs", "cnn_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"classifier {name} must be at least 1, got {getattr(self, name)}")
        if self.max_per_class is not None and self.max_per_class < 2:
            raise ValueError(f"classifier max_per_class must be at least 2, got {self.max_per_class}")

    @classmethod
    def reference(cls, **overrides: object) -> ClassifierSettings:
        """The community's settings."""
        return replace(cls(), **overrides)  # type: ignore[arg-type]

    @classmethod
    def cpu(cls, **overrides: object) -> ClassifierSettings:
        """Reduced setting for a small CPU: H = 256, 15 epochs, at most 50,000 showers per class."""
        return replace(cls(hidden=256, epochs=15, max_per_class=50_000), **overrides)  # type: ignore[arg-type]


@dataclass
class ClassifierResult:
    """Outcome of the classifier test.

    Attributes:
        inputs: ``"low"``, ``"low-normed"`` or ``"high"``.
        auc: Mean calibrated ROC AUC over runs; ``auc_std`` their standard deviation.
        jsd: Mean JSD over runs; ``jsd_std`` their standard deviation.
        runs: Per-run ``auc``, ``jsd``, ``best_epoch``.
        settings: The settings used (and the split sizes).
    """

    inputs: str
    auc: float
    auc_std: float
    jsd: float
    jsd_std: float
    runs: list[dict[str, float]]
    settings: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        """Plain-dict form, for JSON."""
        return asdict(self)


def low_level_inputs(showers: np.ndarray, incident_energies: np.ndarray) -> np.ndarray:
    """``[log10 E_inc, voxels / E_inc]`` (thresholded showers, MeV)."""
    e = np.asarray(incident_energies, dtype=np.float64).reshape(-1, 1)
    return np.concatenate([np.log10(e), showers / e], axis=1)


def low_level_normed_inputs(
    showers: np.ndarray, incident_energies: np.ndarray, geometry: CylindricalGeometry
) -> np.ndarray:
    """``[log10 E_inc, voxels / (E_layer + 1e-16), log10(E_layer + 1e-8)]``."""
    e = np.asarray(incident_energies, dtype=np.float64).reshape(-1, 1)
    e_layer = np.add.reduceat(showers, geometry.layer_offsets[:-1], axis=1)
    per_voxel = np.repeat(e_layer, np.diff(geometry.layer_offsets), axis=1)
    return np.concatenate([np.log10(e), showers / (per_voxel + 1e-16), np.log10(e_layer + 1e-8)], axis=1)


class NormedFromLowLevel:
    """:func:`low_level_normed_inputs` computed from :func:`low_level_inputs` rows, batch by batch:
    the evaluation then holds one table of inputs for both classifiers (ds3: 4 GB per sample in bf16
    instead of 8). Layer sums are taken in float64, so an empty layer stays exactly empty.

    Args:
        geometry: The binning (its layer boundaries).
    """

    def __init__(self, geometry: CylindricalGeometry) -> None:
        sizes = np.diff(geometry.layer_offsets)
        self.layer_of_voxel = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))
        self.n_layers = len(sizes)

    def width(self, low_level_width: int) -> int:
        return low_level_width + self.n_layers

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + V)`` low-level rows -> ``(B, 1 + V + L)`` normed rows (float32)."""
        x = rows.double()
        energy = torch.pow(10.0, x[:, :1])
        voxels = x[:, 1:] * energy  # MeV
        layers = torch.zeros((len(x), self.n_layers), dtype=torch.float64)
        layers.index_add_(1, self.layer_of_voxel, voxels)
        normed = voxels / (layers[:, self.layer_of_voxel] + 1e-16)
        return torch.cat([x[:, :1], normed, torch.log10(layers + 1e-8)], dim=1).float()


class _ImageBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv1 = CylindricalConv3d(channels_in, channels_out, stride=stride)
        self.conv2 = CylindricalConv3d(channels_out, channels_out)
        self.norm1, self.norm2 = nn.BatchNorm3d(channels_out), nn.BatchNorm3d(channels_out)
        self.skip = nn.Conv3d(channels_in, channels_out, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.leaky_relu(h + self.skip(x))


class ShowerImageCNN(nn.Module):
    """Residual 3D CNN classifier on ``(layer, alpha, r)`` shower images (logit output).

    In the role of the CaloChallenge's 3D ResNet-18 for datasets 2 and 3, scaled for a CPU: a
    stem and two residual stages that halve layers and alpha, convolutions periodic in alpha,
    global average pooling, then ``log10 E_inc`` joins the pooled features before a small head.

    Input: the low-level inputs ``[log10 E_inc, voxels / E_inc]`` ``(N, 1 + L*A*R)``; voxel
    fractions are seen as ``log1p(fraction / 1e-5)`` so that faint and bright cells both count.

    Args:
        shape: Image shape ``(L, A, R)``.
        channels: Channels of the first stage.
    """

    def __init__(self, shape: tuple[int, int, int], channels: int = 8) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        c = channels
        self.stem = CylindricalConv3d(1, c)
        self.stages = nn.Sequential(_ImageBlock(c, 2 * c, (2, 2, 1)), _ImageBlock(2 * c, 4 * c, (2, 2, 1)))
        self.head = nn.Sequential(nn.Linear(4 * c + 1, 64), nn.LeakyReLU(), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_energy, fractions = x[:, :1], x[:, 1:]
        image = torch.log1p(fractions.clamp_min(0.0) / 1e-5).reshape(-1, 1, *self.shape)
        h = self.stages(F.leaky_relu(self.stem(image)))
        return self.head(torch.cat([h.mean(dim=(2, 3, 4)), log_energy], dim=1))


def build_network(
    n_inputs: int, settings: ClassifierSettings, image_shape: tuple[int, int, int] | None = None
) -> nn.Module:
    """The reference fully connected classifier (logit output), or the image CNN when
    ``image_shape`` is given (inputs: the low-level inputs of showers of that shape)."""
    if image_shape is not None:
        if n_inputs != 1 + int(np.prod(image_shape)):
            raise ValueError(f"the image classifier needs 1 + {int(np.prod(image_shape))} inputs, got {n_inputs}")
        return ShowerImageCNN(image_shape, settings.cnn_channels)
    layers: list[nn.Module] = [nn.Linear(n_inputs, settings.hidden), nn.LeakyReLU()]
    for _ in range(settings.n_hidden_layers):
        layers += [nn.Linear(settings.hidden, settings.hidden), nn.LeakyReLU()]
    layers.append(nn.Linear(settings.hidden, 1))
    return nn.Sequential(*layers)


def _split(data: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator) -> list[np.ndarray]:
    counts = (len(data) * np.asarray(fractions)).astype(int)
    shuffled = data[rng.permutation(len(data))]
    return np.split(shuffled, counts.cumsum()[:-1])[:3]


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
    """The classifier's logits ``(N,)`` of inputs ``(N, D)``, in evaluation mode and in batches (of at
    most 400 MB of float32 inputs: ds3's 40,501 inputs go 2,469 showers at a time)."""
    model.eval()
    batch_size = max(1, min(batch_size, int(1e8 // x.shape[1])))
    device = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(device)).reshape(-1) for i in range(0, len(x), batch_size)])


def train_epoch(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """One pass over ``(x, y)`` in a random order: the BCE-with-logits loss, each shower weighing ``w``."""
    model.train()
    order = torch.randperm(len(x), generator=generator).to(y.device)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        losses = F.binary_cross_entropy_with_logits(model(x[idx].to(y.device)).reshape(-1), y[idx], reduction="none")
        loss = (losses * w[idx]).sum() / w[idx].sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


class PairedInputs:
    """Rows of two input tables, the generated ``(N_g, D)`` then the reference ``(N_r, D)``, read as one
    table without copying either: ``inputs[key]`` gathers the rows ``rows[key]`` (an index tensor or a
    slice) as float32. The tables may be stored in bf16 (ds3's 40,500 voxels: 4 GB instead of 8 per
    50,000 showers)."""

    def __init__(
        self, generated: torch.Tensor, reference: torch.Tensor, rows: torch.Tensor,
        transform: NormedFromLowLevel | None = None,
    ) -> None:  # fmt: skip
        self.generated, self.reference, self.rows, self.transform = generated, reference, rows, transform
        width = generated.shape[1]
        self.shape = (len(rows), width if transform is None else transform.width(width))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice | torch.Tensor) -> torch.Tensor:
        rows = self.rows[key]
        n_gen = len(self.generated)
        out = torch.empty((len(rows), self.generated.shape[1]), dtype=torch.float32)
        from_gen = rows < n_gen
        out[from_gen] = self.generated[rows[from_gen]].float()
        out[~from_gen] = self.reference[rows[~from_gen] - n_gen].float()
        if self.transform is None:
            return out
        return torch.cat([self.transform(out[lo : lo + 1000]) for lo in range(0, len(out), 1000)])


def _as_table(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Classifier inputs as a CPU tensor: bf16 stays bf16, anything else float32, NaN and infinities as
    numpy's ``nan_to_num`` makes them; no copy when the input is float32 and finite."""
    table = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
    if table.dtype not in (torch.float32, torch.bfloat16):
        table = table.float()
    for lo in range(0, len(table), 4096):
        block = table[lo : lo + 4096]
        if not bool(torch.isfinite(block).all()):
            finite_max = torch.finfo(table.dtype).max
            return torch.nan_to_num(table, nan=0.0, posinf=finite_max, neginf=-finite_max)
    return table


def _one_run(
    generated: torch.Tensor,
    reference: torch.Tensor,
    settings: ClassifierSettings,
    seed: int,
    image_shape: tuple[int, int, int] | None = None,
    generated_weights: np.ndarray | None = None,
    transform: NormedFromLowLevel | None = None,
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = resolve_device(settings.device)
    gen_rows = _split(np.arange(len(generated)), settings.split, rng)
    ref_rows = _split(np.arange(len(reference)), settings.split, rng)
    gen_w = np.ones(len(generated)) if generated_weights is None else np.asarray(generated_weights, dtype=np.float64)

    def stack(k: int) -> tuple[PairedInputs | torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(np.concatenate([gen_rows[k], ref_rows[k] + len(generated)]))
        x = PairedInputs(generated, reference, rows, transform)
        y = np.concatenate([np.zeros(len(gen_rows[k])), np.ones(len(ref_rows[k]))]).astype(np.float32)
        w_gen = gen_w[gen_rows[k]]
        # each class weighs as many showers as it holds: a weighted sample is a reshaped, not a larger, one
        w = np.concatenate([w_gen * len(w_gen) / max(w_gen.sum(), 1e-300), np.ones(len(ref_rows[k]))])
        # on a GPU the split is copied over whole; on a CPU its batches are gathered as they are needed
        return (x[:].to(device) if device.type != "cpu" else x, torch.from_numpy(y).to(device),
                torch.from_numpy(w.astype(np.float32)).to(device))  # fmt: skip

    (x_train, y_train, w_train), (x_test, y_test, w_test), (x_val, y_val, w_val) = stack(0), stack(1), stack(2)
    model = build_network(x_train.shape[1], settings, image_shape).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    best_acc, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(settings.epochs):
        train_epoch(model, optimiser, x_train, y_train, w_train, settings.batch_size, generator)
        hits = ((predict_logits(model, x_test) > 0).float() == y_test).float()
        acc = float((hits * w_test).sum() / w_test.sum())
        if acc > best_acc:
            best_acc, best_epoch, best_state = acc, epoch + 1, copy.deepcopy(model.state_dict())
        if acc == 1.0:
            break
    model.load_state_dict(best_state)
    p_test = torch.sigmoid(predict_logits(model, x_test)).double().cpu().numpy()
    p_val = torch.sigmoid(predict_logits(model, x_val)).double().cpu().numpy()
    calibrator = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6)
    calibrator.fit(p_test, y_test.cpu().numpy(), sample_weight=w_test.double().cpu().numpy())
    p_cal = calibrator.predict(p_val)
    truth = y_val.cpu().numpy().astype(np.float64)
    w = w_val.double().cpu().numpy()
    bce = -np.sum(w * (truth * np.log(p_cal) + (1 - truth) * np.log(1 - p_cal))) / w.sum()
    return {
        "auc": float(roc_auc_score(truth, p_cal, sample_weight=w)),
        "jsd": float((np.log(2.0) - bce) / np.log(2.0)),
        "best_epoch": best_epoch,
        "best_test_accuracy": best_acc,
    }


def classifier_test(
    generated: np.ndarray,
    reference: np.ndarray,
    settings: ClassifierSettings,
    inputs: str = "high",
    image_shape: tuple[int, int, int] | None = None,
    generated_weights: np.ndarray | None = None,
    transform: NormedFromLowLevel | None = None,
) -> ClassifierResult:
    """Run the classifier test ``settings.runs`` times on prepared inputs.

    Args:
        generated: ``(N_gen, D)`` classifier inputs of the generated showers (numpy, or a torch
            tensor; bf16 tensors are read as they are, batch by batch).
        reference: ``(N_ref, D)`` inputs of the reference showers.
        settings: Network and schedule.
        inputs: Name of the input kind, recorded in the result.
        image_shape: ``(L, A, R)``: train :class:`ShowerImageCNN` on low-level inputs instead of
            the fully connected network.
        generated_weights: ``(N_gen,)`` per-shower weights of the generated sample: they weigh
            its showers in the loss, the calibration, the AUC and the JSD (the classifier then
            judges the reweighted sample).
        transform: Computes the classifier's inputs from the given rows, batch by batch
            (:class:`NormedFromLowLevel`: the normed inputs from stored low-level ones).

    Raises:
        ValueError: If the two sets have different widths, or a split would hold fewer than
            25 showers per class.
    """
    if generated.shape[1] != reference.shape[1]:
        raise ValueError(f"classifier inputs differ in width: {generated.shape[1]} vs {reference.shape[1]}")
    n = min(len(generated), len(reference))
    if settings.max_per_class is not None:
        n = min(n, settings.max_per_class)
    smallest = int(n * min(settings.split))
    if smallest < MIN_PER_CLASS:
        raise ValueError(
            f"too few showers for the classifier test: {n} per class gives {smallest} in the smallest split; "
            f"need at least {MIN_PER_CLASS} (about {int(np.ceil(MIN_PER_CLASS / min(settings.split)))} per class)"
        )
    generated, reference = _as_table(generated[:n]), _as_table(reference[:n])
    weights = None if generated_weights is None else np.asarray(generated_weights, dtype=np.float64)[:n]
    runs = [
        _one_run(generated, reference, settings, settings.seed + k, image_shape, weights, transform)
        for k in range(settings.runs)
    ]
    aucs = np.array([r["auc"] for r in runs])
    jsds = np.array([r["jsd"] for r in runs])
    info = {
        **asdict(settings),
        "network": "mlp" if image_shape is None else "cnn",
        "showers_per_class": n,
        "split_sizes": [int(n * f) for f in settings.split],
        "generated_weights": generated_weights is not None,
        "input_dtype": "bfloat16" if torch.bfloat16 in (generated.dtype, reference.dtype) else "float32",
    }
    return ClassifierResult(
        inputs, float(aucs.mean()), float(aucs.std()), float(jsds.mean()), float(jsds.std()), runs, info
    )
