"""Refinement: a network that maps a modified shower (cheap simulation, a surrogate's) to a refined one.

The refiner works on ``u = log1p(E_voxel / s)`` (``s``: the read-out threshold, so a hit of a
few thresholds is of order 1) and adds a correction computed from the whole shower and the
incident energy: ``u' = u + f(u, log10 E_inc)``, decoded as ``E' = s * expm1(max(u', 0))``. The last
layer starts at zero, so training starts from the identity, and a voxel may gain or lose its hit.

Objectives (:class:`RefineSettings`):

- ``paired``: showers made from the same primaries by both simulations (``pairing_index``):
  the distribution term below plus a regression of each refined shower's features on its
  nominal partner's (CMS's regression, arXiv:2309.12919, there on the voxels themselves: on
  ds2 that returned each voxel's conditional mean, filled the empty voxels and made the
  showers more separable, not less: AUC 0.64 to 0.88 in a first trial);
- ``unpaired``: the distribution term alone, with a small pull toward the identity.

The distribution term compares batches of refined and nominal showers through differentiable
versions of the CaloChallenge features (per layer: log energy, centres and widths in r, eta
and phi, the fraction of voxels above threshold with a soft step; total energy over the
incident energy; ``log10 E_inc`` itself, which the refiner cannot change, so matching the joint
distribution keeps each shower's energy dependence). The comparison is a sliced Wasserstein
distance: both batches, standardised, are projected on every feature axis and on random
directions, sorted, and the sorted projections compared (Deshpande et al., arXiv:1803.11188).
A second sliced distance compares the encoded voxels themselves (``voxel_weight``), so that no
voxel's energy drifts where the features do not look. Training starts from the identity and keeps
it unless an epoch beats it on held-out showers.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from calosurrogate._io import atomic_output
from calosurrogate.data import ShowerFile, ShowerWriter
from calosurrogate.devices import resolve_device
from calosurrogate.geometry import CylindricalGeometry, default_min_energy, geometry_from_xml_string
from calosurrogate.layers import CylindricalConv3d
from calosurrogate.metrics.features import moment_matrix

MODES = ("paired", "unpaired")
MAX_CHANGE = 2.0  # largest change of an encoded voxel
# Width of the voxel term's soft read-out step, in units of the threshold: at 0.25 a refiner lit
# voxels just above the threshold (5% of its hits in the lowest of 12 energy bins, nominal 1%)
VOXEL_STEP = 0.05


@dataclass(frozen=True)
class RefineSettings:
    """The refiner's network and training.

    Attributes:
        mode: ``"paired"`` or ``"unpaired"`` (module docstring).
        network: ``"dense"`` or ``"conv"`` (regular geometries; :class:`VoxelRefiner`).
        hidden, depth: Width (channels) and number of hidden layers of the correction network.
        epochs, batch_size, learning_rate: Adam schedule; the epoch with the lowest validation
            loss is kept.
        distribution_weight: Weight of the sliced Wasserstein term.
        regression_weight: Weight of the paired regression (mean squared difference of the
            standardised features of a refined shower and its nominal partner).
        identity_weight: Weight of the pull toward the identity (unpaired mode).
        voxel_weight: Weight of a second sliced distance, on the encoded voxels themselves (every
            voxel's axis and random directions): the features alone leave each voxel's energy
            free, and a refiner trained on them alone scaled hit energies by factors of 0.25 to 2
            voxel by voxel, which a low-level classifier saw at once (benchmarks/LOG.md, 2026-12-07).
        projections: Random directions of the sliced distance, beside the feature axes.
        validation_fraction: Share of the showers kept for the validation loss.
        seed: Seed of the split, the initialisation, the batches and the directions.
        device: ``"cpu"`` or ``"cuda"``.
    """

    mode: str = "paired"
    network: str = "dense"
    hidden: int = 256
    depth: int = 2
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 3e-4
    distribution_weight: float = 1.0
    regression_weight: float = 0.1
    identity_weight: float = 0.01
    voxel_weight: float = 1.0
    projections: int = 64
    validation_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"refinement mode must be one of {MODES}, got {self.mode!r}")
        if self.network not in ("conv", "dense"):
            raise ValueError(f"refinement network must be conv or dense, got {self.network!r}")
        for name in ("hidden", "depth", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"refinement {name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")


class VoxelRefiner(nn.Module):
    """``u' = u + f(u, log10 E_inc)`` on encoded voxels ``(N, n_voxels)``, ``f``'s last layer
    starting at zero (the identity).

    ``f`` is a fully connected network over the whole shower, or, for a regular geometry
    (``image_shape`` ``(L, A, R)``), a small convolutional one over the ``(layer, alpha, r)``
    image with periodic alpha (each voxel corrected from its neighbourhood: what a cheaper
    simulation changes is local, how its energy is spread into hits).

    Args:
        n_voxels: Voxels per shower.
        hidden: Width of the hidden layers (channels of the convolutional network).
        depth: Number of hidden layers.
        image_shape: ``(L, A, R)`` for the convolutional network (None: fully connected).
    """

    def __init__(
        self, n_voxels: int, hidden: int = 512, depth: int = 2, image_shape: tuple[int, int, int] | None = None
    ) -> None:
        super().__init__()
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        if self.image_shape is None:
            layers: list[nn.Module] = [nn.Linear(n_voxels + 1, hidden), nn.SiLU()]
            for _ in range(depth - 1):
                layers += [nn.Linear(hidden, hidden), nn.SiLU()]
            last: nn.Module = nn.Linear(hidden, n_voxels)
        else:
            layers = [CylindricalConv3d(2, hidden), nn.SiLU()]
            for _ in range(depth - 1):
                layers += [CylindricalConv3d(hidden, hidden), nn.SiLU()]
            last = CylindricalConv3d(hidden, 1)
        for parameter in last.parameters():
            nn.init.zeros_(parameter)
        self.correction = nn.Sequential(*layers, last)

    def forward(self, encoded: torch.Tensor, log_energy: torch.Tensor) -> torch.Tensor:
        if self.image_shape is None:
            change = self.correction(torch.cat([encoded, log_energy.reshape(-1, 1)], dim=1))
        else:
            image = encoded.reshape(-1, 1, *self.image_shape)
            energy = (log_energy.reshape(-1, 1, 1, 1, 1) - 3.0).expand_as(image)  # log10(E / GeV)
            change = self.correction(torch.cat([image, energy], dim=1)).reshape(encoded.shape)
        # bounded: a voxel's energy changes by a factor of at most about e^2 (unbounded, one large
        # step of the optimiser turned voxels into TeV and the loss into 1e8)
        return encoded + MAX_CHANGE * torch.tanh(change / MAX_CHANGE)


def _refiner_network(geometry: CylindricalGeometry, settings: RefineSettings) -> VoxelRefiner:
    if settings.network == "conv" and not geometry.is_regular:
        raise ValueError(f"the convolutional refiner reads showers as images and needs every layer binned alike; "
                         f"{geometry.name} is not: use network dense")  # fmt: skip
    shape = geometry.shape if settings.network == "conv" else None
    return VoxelRefiner(geometry.n_voxels, settings.hidden, settings.depth, shape)


def encode(voxels: torch.Tensor, scale: float) -> torch.Tensor:
    """``log1p(E / scale)`` of voxel energies (MeV)."""
    return torch.log1p(voxels.clamp_min(0.0) / scale)


def decode(encoded: torch.Tensor, scale: float) -> torch.Tensor:
    """Voxel energies (MeV) of encoded voxels; negative codes are empty voxels."""
    return scale * torch.expm1(encoded.clamp_min(0.0))


class ShowerSummaries(nn.Module):
    """Differentiable CaloChallenge-like features of showers ``(N, n_voxels)`` MeV and their
    incident energies ``(N,)`` MeV: ``(N, 9 L + 2 + K)`` (module docstring), the last ``K`` the
    shower's spectrum of hit energies: the share of its hits in each of ``K`` soft bins of
    ``log10 E_voxel`` over four decades above the threshold (what the low-level classifier and the
    voxel-energy histogram see: without it a refiner got the hits right and their energies wrong)."""

    def __init__(self, geometry: CylindricalGeometry, threshold_mev: float, spectrum_bins: int = 8) -> None:
        super().__init__()
        self.n_layers = geometry.n_layers
        self.threshold = threshold_mev
        low = float(np.log10(threshold_mev))
        self.register_buffer("spectrum_edges", torch.linspace(low, low + 4.0, spectrum_bins + 1))
        self.register_buffer("moments", torch.from_numpy(moment_matrix(geometry)).float())
        per_layer = np.diff(geometry.layer_offsets).astype(np.float32)
        self.register_buffer("voxels_per_layer", torch.from_numpy(per_layer))

    def forward(self, voxels: torch.Tensor, incident_energy: torch.Tensor) -> torch.Tensor:
        # the read-out threshold as a soft step: a voxel below it counts neither as a hit nor as energy
        # (a hard step with this step's gradient, straight through, lit every voxel of a ds2 shower)
        hits = torch.sigmoid((voxels - self.threshold) / (0.25 * self.threshold))
        log_voxel = torch.log10(voxels.clamp_min(0.5 * self.threshold)).unsqueeze(-1)
        width = 0.25 * (self.spectrum_edges[1] - self.spectrum_edges[0])
        member = torch.sigmoid((log_voxel - self.spectrum_edges[:-1]) / width) - torch.sigmoid(
            (log_voxel - self.spectrum_edges[1:]) / width
        )
        spectrum = (member * hits.unsqueeze(-1)).sum(1) / (hits.sum(1, keepdim=True) + 1.0)
        voxels = voxels * hits
        m = (voxels @ self.moments).reshape(len(voxels), 7, self.n_layers)
        # 1e-3 MeV (a tenth of a hit) keeps an empty layer's logarithm and centres, and their gradients, finite
        energy = m[:, 0] + 1e-3
        parts = [torch.log10(energy)]
        for k in (1, 3, 5):  # r, eta, phi
            centre = m[:, k] / energy
            width = torch.sqrt((m[:, k + 1] / energy - centre**2).clamp_min(0.0) + 1e-6)
            parts += [centre / 100, width / 100]
        parts.append((hits @ (self.moments[:, : self.n_layers] > 0).float()) / self.voxels_per_layer)
        total = voxels.sum(1, keepdim=True)
        e_inc = incident_energy.reshape(-1, 1)
        parts += [total / e_inc, torch.log10(e_inc), spectrum]
        return torch.cat(parts, dim=1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the sorted projections of two equal-sized batches ``(B, D)``
    on every axis and on ``directions`` ``(D, K)`` (unit columns)."""
    pa = torch.cat([a, a @ directions], dim=1).sort(dim=0).values
    pb = torch.cat([b, b @ directions], dim=1).sort(dim=0).values
    return ((pa - pb) ** 2).mean()


@dataclass
class RefinerBundle:
    """A trained refiner and what it needs to run: checkpoint = weights + settings."""

    model: VoxelRefiner
    geometry: CylindricalGeometry
    scale: float
    settings: RefineSettings
    history: list[dict]

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        """Write ``path`` atomically (an existing file is kept unless ``force``)."""
        state = {"state_dict": self.model.state_dict(), "settings": asdict(self.settings),
                 "geometry": self.geometry.name, "geometry_xml": self.geometry.to_xml_string(), "scale": self.scale, "history": self.history,
                 "n_voxels": self.geometry.n_voxels}  # fmt: skip
        with atomic_output(path, force=force) as tmp:
            torch.save(state, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RefinerBundle:
        """Read a refiner written by :meth:`save`.

        Raises:
            ValueError: If the file is not a refiner checkpoint.
        """
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "state_dict" not in state or "scale" not in state:
            raise ValueError(f"{path}: not a refiner checkpoint (calo refine writes refiner.pt)")
        settings = RefineSettings(**state["settings"])
        geometry = geometry_from_xml_string(state["geometry_xml"], state["geometry"])
        model = _refiner_network(geometry, settings)
        model.load_state_dict(state["state_dict"])
        return cls(model, geometry, state["scale"], settings, state.get("history", []))

    @torch.inference_mode()
    def refine(self, voxels: np.ndarray, incident_energies: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Refined showers ``(N, n_voxels)`` MeV of showers ``(N, n_voxels)`` MeV."""
        device = next(self.model.parameters()).device
        self.model.eval()
        out = np.empty(voxels.shape, dtype=np.float32)
        for lo in range(0, len(voxels), batch_size):
            x = torch.as_tensor(np.asarray(voxels[lo : lo + batch_size], dtype=np.float32), device=device)
            e = torch.as_tensor(np.asarray(incident_energies[lo : lo + batch_size], dtype=np.float32), device=device)
            refined = decode(self.model(encode(x, self.scale), torch.log10(e.reshape(-1))), self.scale)
            out[lo : lo + len(x)] = torch.where(refined >= self.scale, refined, 0.0).cpu().numpy()  # the read-out
        return out


def train_refiner(
    modified: tuple[np.ndarray, np.ndarray],
    nominal: tuple[np.ndarray, np.ndarray],
    geometry: CylindricalGeometry,
    settings: RefineSettings | None = None,
    log: bool = False,
) -> RefinerBundle:
    """Train a refiner from modified to nominal showers.

    Args:
        modified: ``(incident_energies (N,), voxels (N, n_voxels))`` MeV of the modified showers.
        nominal: The nominal showers, likewise; in ``paired`` mode row ``i`` shares its primary
            with row ``i`` of ``modified`` (same count).
        geometry: Their binning.
        settings: Network and objective (default :class:`RefineSettings`).
        log: Print one line per epoch.

    Raises:
        ValueError: In paired mode, if the two samples differ in size or incident energies.
    """
    settings = settings or RefineSettings()
    e_mod, x_mod = (np.asarray(a, dtype=np.float32) for a in modified)
    e_nom, x_nom = (np.asarray(a, dtype=np.float32) for a in nominal)
    e_mod, e_nom = e_mod.reshape(-1), e_nom.reshape(-1)
    if settings.mode == "paired":
        if len(e_mod) != len(e_nom):
            raise ValueError(f"paired refinement needs showers in pairs: {len(e_mod)} modified, {len(e_nom)} nominal")
        if not np.allclose(e_mod, e_nom, rtol=1e-5):
            raise ValueError("paired refinement: the two samples' incident energies differ row by row; they are not "
                             "paired (simulate both with the same --seed) - use the unpaired mode")  # fmt: skip
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    scale = default_min_energy(geometry)
    model = _refiner_network(geometry, settings).to(device)
    summaries = ShowerSummaries(geometry, scale).to(device)
    t = {k: torch.from_numpy(v).to(device) for k, v in (("e_mod", e_mod), ("x_mod", x_mod), ("e_nom", e_nom),
                                                      ("x_nom", x_nom))}  # fmt: skip
    with torch.no_grad():
        reference = summaries(t["x_nom"][:20_000], t["e_nom"][:20_000])
        shift, spread = reference.mean(0), reference.std(0).clamp_min(1e-3)
    n_dims = len(shift)
    generator = torch.Generator().manual_seed(settings.seed)
    directions = torch.randn(n_dims, settings.projections, generator=generator).to(device)
    directions /= directions.norm(dim=0, keepdim=True)
    voxel_directions = torch.randn(geometry.n_voxels, settings.projections, generator=generator).to(device)
    voxel_directions /= voxel_directions.norm(dim=0, keepdim=True)

    def read_out(voxels: torch.Tensor) -> torch.Tensor:
        """Encoded voxels after a soft read-out threshold (as the summaries see them)."""
        return encode(voxels * torch.sigmoid((voxels - scale) / (VOXEL_STEP * scale)), scale)

    held = rng.random(len(e_mod)) < settings.validation_fraction
    train_rows, val_rows = np.flatnonzero(~held), np.flatnonzero(held)
    nominal_rows = np.arange(len(e_nom))

    def loss_of(rows: np.ndarray, nominal_batch: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(rows).to(device)
        u = encode(t["x_mod"][idx], scale)
        refined_u = model(u, torch.log10(t["e_mod"][idx]))
        refined = decode(refined_u, scale)
        nom_idx = torch.from_numpy(nominal_batch).to(device)
        s_ref = (summaries(refined, t["e_mod"][idx]) - shift) / spread
        s_nom = (summaries(t["x_nom"][nom_idx], t["e_nom"][nom_idx]) - shift) / spread
        loss = settings.distribution_weight * sliced_wasserstein(s_ref, s_nom, directions)
        if settings.voxel_weight > 0:
            loss = loss + settings.voxel_weight * sliced_wasserstein(
                read_out(refined), read_out(t["x_nom"][nom_idx]), voxel_directions
            )
        if settings.mode == "paired":  # regression of each shower's features on its partner's
            loss = loss + settings.regression_weight * ((s_ref - s_nom) ** 2).mean()
        else:
            loss = loss + settings.identity_weight * ((refined_u - u) ** 2).mean()
        return loss

    def nominal_for(rows: np.ndarray, draw: np.random.Generator) -> np.ndarray:
        # paired: the rows' own partners; unpaired: as many nominal showers drawn at random
        return rows if settings.mode == "paired" else draw.choice(nominal_rows, size=len(rows), replace=False)

    def validation_loss() -> float:
        model.eval()
        with torch.no_grad():
            draw = np.random.default_rng(settings.seed + 1)  # the same validation batches every epoch
            batches_of = [val_rows[lo : lo + settings.batch_size]
                          for lo in range(0, len(val_rows) - settings.batch_size + 1, settings.batch_size)]  # fmt: skip
            val = [float(loss_of(rows, nominal_for(rows, draw))) for rows in batches_of]
        return float(np.mean(val)) if val else float("nan")

    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    # epoch 0 is the identity: a refiner that does not beat it on held-out showers is not kept
    best = validation_loss()
    best_state, history = copy.deepcopy(model.state_dict()), [{"epoch": 0, "val_loss": best}]
    if log:
        print(f"epoch 0 (identity): val {best:.4f}", flush=True)
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        model.train()
        order = rng.permutation(train_rows)
        total, batches = 0.0, 0
        for lo in range(0, len(order) - settings.batch_size + 1, settings.batch_size):
            rows = order[lo : lo + settings.batch_size]
            loss = loss_of(rows, nominal_for(rows, rng))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            total, batches = total + float(loss.detach()), batches + 1
        val_loss = validation_loss()
        history.append({"epoch": epoch + 1, "train_loss": total / max(batches, 1), "val_loss": val_loss,
                        "seconds": time.perf_counter() - start})  # fmt: skip
        if log:
            print(f"epoch {epoch + 1}: train {history[-1]['train_loss']:.4f} val {val_loss:.4f}", flush=True)
        if not np.isfinite(best) or val_loss < best:
            best, best_state = val_loss, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return RefinerBundle(model.cpu(), geometry, scale, settings, history)


def refine_file(
    bundle: RefinerBundle,
    modified_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    chunk_size: int = 5000,
    force: bool = False,
) -> tuple[Path, float]:
    """Refine every shower of a file into a new file (written atomically); returns the path and
    the refiner's seconds per shower (reading and writing excluded)."""
    seconds, n = 0.0, 0
    with ShowerFile(modified_path, bundle.geometry, negative="keep") as f:
        attrs = {"generator": f"refined by calosurrogate ({bundle.settings.mode})", "refined_from": str(modified_path)}
        with ShowerWriter(out, bundle.geometry.n_voxels, force=force, attrs=attrs) as writer:
            for batch in f.iter_chunks(chunk_size):
                start = time.perf_counter()
                refined = bundle.refine(batch.showers, batch.incident_energies.reshape(-1))
                seconds += time.perf_counter() - start
                n += len(refined)
                writer.write(batch.incident_energies, refined)
    return Path(out), seconds / max(n, 1)
