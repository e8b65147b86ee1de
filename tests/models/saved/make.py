"""Make models saved before a change, and what they sampled then: ``tests/models/test_saved_models.py``
loads them with today's code and requires the same showers, bit for bit. Kept as the record of how they
were made (running it with today's code makes files of today's format):

- the diffusion variants, before the family was rebuilt from parts (issue 19): at commit 8e8d209 with
  ``python tests/models/saved/make.py diffusion``;
- the flow variants, before CaloFlow's flow I became the shared layer-energy stage: at commit 1053518
  with ``python tests/models/saved/make.py flow``.

The ``*_loss.npy`` files (:func:`training_loss`) were computed from the saved files with the code of the
same commits (8e8d209, 1053518), after the fact; the training objective must give them again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer
from calosurrogate.models import build_surrogate

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "edm_heun": {"hidden": 16, "blocks": 1, "steps": 4},
    "ddpm_ancestral": {"objective": "ddpm", "sampler": "ddpm", "hidden": 16, "blocks": 1, "steps": 4},
    "v_dpm2m": {"objective": "v", "sampler": "dpm2m", "hidden": 16, "blocks": 1, "steps": 4},
    "flow_matching_rk4": {"objective": "flow-matching", "sampler": "rk4", "hidden": 16, "blocks": 1, "steps": 3},
    "ds2_recipe": {"spike_slab": True, "code_scale": "hits", "layer_energies": True, "layer_occupancy": True,
                   "layer_library": True, "library_max_hits": 2, "hidden": 16, "blocks": 1, "sampler": "ddpm",
                   "steps": 4},
    "transformer": {"backbone": "transformer", "transformer_dim": 16, "transformer_depth": 1, "steps": 3},
    "unet": {"backbone": "unet", "unet_channels": [4, 8], "steps": 3},
}  # fmt: skip
FLOW_VARIANTS = {
    "flow_maf": {"energy_hidden": 16, "shape_hidden": 16, "shape_transforms": 2, "energy_transforms": 2},
    "flow_coupling": {"energy_flow": "coupling", "energy_hidden": 16, "shape_hidden": 16, "shape_transforms": 2,
                      "energy_transforms": 2},
    "flow_per_layer": {"shape_flow": "per_layer", "energy_hidden": 16, "shape_hidden": 16, "shape_transforms": 2,
                       "energy_transforms": 2},
}  # fmt: skip


def geometry() -> CylindricalGeometry:
    edges = (0.0, 5.0, 12.0, 40.0)
    return CylindricalGeometry("tiny", "electron", tuple(CylindricalLayer(i, edges, 4) for i in range(3)))


def data(n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse toy showers: log-normal hits in a third of the voxels, some layers empty."""
    rng = np.random.default_rng(7)
    incident = np.exp(rng.uniform(np.log(2e3), np.log(2e5), (n, 1)))
    hits = rng.random((n, 36)) < 0.35
    showers = np.where(hits, rng.lognormal(0.0, 1.5, (n, 36)) * incident / 2e3, 0.0)
    showers[rng.random(n) < 0.3, :12] = 0.0  # an empty first layer in a third of the showers
    return torch.as_tensor(showers, dtype=torch.float32), torch.as_tensor(incident, dtype=torch.float32)


CONDITIONS = np.array([[3e3], [2e4], [1.5e5]])


def training_loss(model) -> np.ndarray:
    """The per-shower training loss of 64 toy showers, its random draws seeded: the objective's record."""
    showers, incident = data(64)
    torch.manual_seed(5)
    return model.loss(showers, incident).detach().numpy()


def main(family: str) -> None:
    showers, incident = data()
    for name, config in (VARIANTS if family == "diffusion" else FLOW_VARIANTS).items():
        model = build_surrogate(family, geometry(), config)
        model.fit_preprocessing(showers, incident)
        with torch.no_grad():  # weights away from their zero initialisation, so every path matters
            generator = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
        model.save(HERE / f"{name}.pt")
        np.save(HERE / f"{name}_showers.npy", model.sample(CONDITIONS, seed=3))
        np.save(HERE / f"{name}_loss.npy", training_loss(model))
        print(name, "saved")


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "diffusion")
