"""The surrogate families by name, with one line each on what they are (torch-free, so that
``calo models`` answers at once). Each family's module registers its class under the same name."""

from __future__ import annotations

from typing import NamedTuple


class Family(NamedTuple):
    """A registered family: its module in :mod:`calosurrogate.models`, a one-line summary, its papers."""

    module: str
    summary: str
    papers: str


FAMILIES: dict[str, Family] = {
    "diffusion": Family("diffusion", "Diffusion and flow matching over voxel codes, optionally with a first stage for "
                        "layer energies; sampler and steps chosen at sampling time", "arXiv:2308.03876, 2206.00364"),
    "flow": Family("flow", "CaloFlow two-stage flow: layer energies, then normalised shower shapes",
                   "arXiv:2106.05285, 2110.11377"),
    "inn": Family("inn", "CaloINN-style coupling spline flow over the whole shower", "arXiv:2312.09290"),
    "paraflow": Family("paraflow", "ParaFlow: a MAF over the crystals conditioned on the detector's configuration; "
                       "exact likelihood for calo infer", "arXiv:1705.07057, 1906.04032"),
    "qvae": Family("qvae", "Quantum-assisted VAE: binary latents with a Boltzmann-machine prior",
                   "arXiv:2312.03179, 2410.22870"),
    "vae": Family("vae", "Conditional VAE with a hurdle likelihood (hit or not, then its energy)", "arXiv:1312.6114"),
    "wgan": Family("gan", "Conditional Wasserstein GAN with gradient penalty", "arXiv:1704.00028"),
}  # fmt: skip

# Families of point-cloud showers (planar highly granular calorimeters, point-cloud files): their
# own interface (variable-length showers), trained by calosurrogate.training.points.
POINT_FAMILIES: dict[str, Family] = {
    "caloclouds": Family("caloclouds", "CaloClouds: ShowerFlow, a flow-matching point model and its one-step "
                         "consistency-distilled student, given energy and direction (ild-ecal point clouds)",
                         "arXiv:2309.05704, 2511.01460"),
}  # fmt: skip
