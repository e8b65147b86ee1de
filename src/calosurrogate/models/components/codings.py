"""Voxel codings and likelihoods: log-energy codes with an empty code, and the hurdle likelihood (hit or not, then its energy)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LogEnergyCoding(nn.Module):
    """Voxel energies (MeV) -> log codes of the energy fraction ``E / E_inc``, standardised per voxel.

    Two codings; in both the incident energy only rescales what the network sees:

    - all voxels (``hits_only=False``): ``log(1 + (E / E_inc) / delta)`` with ``delta = cut /
      (GAP max(E_inc))`` of the training data, and voxels below the cut coded as empty. Empty
      voxels map to 0 at every energy and the smallest hit at the highest energy to
      ``log(1 + GAP)``, so a gap of at least that width separates the two: networks that output
      every voxel (GAN generators, denoisers) only have to keep empty voxels below it, and the
      sampling cut in MeV restores exact zeros. Without the gap, sub-cut values lie just below
      the first hit code and small network errors turn them into thousands of faint hits.
    - hit voxels only (``hits_only=True``): ``log(E / E_inc)`` of voxels with ``E >= cut``, for
      models that decide hit / no hit separately (:class:`HurdleLikelihood`).

    ``scale_on_hits`` standardises the all-voxel coding with the mean and spread of each voxel's
    hits alone. Otherwise a voxel that is sometimes empty gets a spread dominated by the gap
    between empty and hit, and a unit of code is a factor of tens in energy: a network error
    that would be small in code wrecks the energies of the hits. With it, a unit of code is the
    natural spread of the hits and empty voxels sit far below.
    """

    GAP = 10.0

    def __init__(self, n_voxels: int, cut_mev: float, hits_only: bool = False, scale_on_hits: bool = False) -> None:
        super().__init__()
        self.cut_mev = float(cut_mev)
        self.hits_only = hits_only
        self.scale_on_hits = scale_on_hits
        self.register_buffer("mean", torch.zeros(n_voxels))
        self.register_buffer("std", torch.ones(n_voxels))
        self.register_buffer("max_raw", torch.tensor(30.0))
        self.register_buffer("delta", torch.tensor(1e-6))

    def raw(self, showers: Tensor, incident_energies: Tensor) -> Tensor:
        """Codes before standardisation; ``showers (N, V)`` MeV, ``incident_energies (N, 1)`` MeV."""
        showers, incident = showers.float(), incident_energies.float().reshape(-1, 1)
        if self.hits_only:
            return torch.log(showers.clamp_min(self.cut_mev) / incident)
        visible = torch.where(showers >= self.cut_mev, showers, torch.zeros_like(showers))
        return torch.log1p(visible / (incident * self.delta))

    @torch.no_grad()
    def fit(self, showers: Tensor, incident_energies: Tensor) -> LogEnergyCoding:
        """Per-voxel mean and standard deviation from training showers (all voxels, or hits only)."""
        self.delta.fill_(self.cut_mev / (self.GAP * float(incident_energies.max())))
        y = self.raw(showers, incident_energies).double()
        on_hits = self.hits_only or self.scale_on_hits
        weight = (showers >= self.cut_mev).double() if on_hits else torch.ones_like(y)
        count = weight.sum(0)
        mean = (y * weight).sum(0) / count.clamp_min(1)
        var = ((y - mean) ** 2 * weight).sum(0) / (count - 1).clamp_min(1)
        enough = count >= 2
        self.mean.copy_(torch.where(enough, mean, (y * weight).sum() / weight.sum().clamp_min(1)).float())
        std = torch.where(enough & (var > 1e-12), var.sqrt(), torch.ones_like(var))
        if self.scale_on_hits and not self.hits_only:
            # A voxel hit in only a few showers has no trustworthy spread; half a unit of log
            # energy keeps its empty code within reach of the network.
            std = std.clamp_min(0.5)
        self.std.copy_(std.float())
        # Decoded energies are capped at twice the largest training voxel: an untrained or
        # diverging network cannot produce astronomically large showers.
        self.max_raw.fill_(float((y * weight).max()) + math.log(2.0))
        return self

    def forward(self, showers: Tensor, incident_energies: Tensor) -> Tensor:
        """Showers ``(N, V)`` MeV -> standardised codes ``(N, V)``."""
        return (self.raw(showers, incident_energies) - self.mean) / self.std

    def empty_code(self) -> Tensor:
        """The standardised code of an empty voxel ``(V,)`` (its raw code is ``log1p(0) = 0``)."""
        return -self.mean / self.std

    def unstandardise(self, codes: Tensor) -> Tensor:
        """Standardised codes -> raw log codes (:meth:`raw`), unclipped: below 0 means "empty"."""
        return codes.float() * self.std + self.mean

    def inverse(self, codes: Tensor, incident_energies: Tensor) -> Tensor:
        """Standardised codes -> showers in MeV (non-negative)."""
        y = self.unstandardise(codes)
        incident = incident_energies.float().reshape(-1, 1)
        # Tensor bounds, not Python floats: keeps the graph free of data-dependent values (export).
        if self.hits_only:
            return incident * torch.exp(torch.minimum(y, self.max_raw.clamp(max=0.0)))
        return incident * self.delta * torch.expm1(torch.minimum(y.clamp_min(0.0), self.max_raw))


class HurdleLikelihood(nn.Module):
    """Likelihood for sparse voxel energies: a Bernoulli "is the voxel hit" times a Gaussian on
    the hit voxels' standardised ``log(E / E_inc)`` (a hurdle model, as in zero-inflated regression).

    Zeros are a large, exact fraction of calorimeter voxels; one Gaussian in any continuous
    coding smears them out. A decoder instead predicts three numbers per voxel: the hit logit
    and the mean and log-width of the code given a hit (:class:`LogEnergyCoding`, hits only).
    Shapes: ``params (N, V, 3)``, showers ``(N, V)`` MeV.
    """

    n_params = 3

    def __init__(self, coding: LogEnergyCoding) -> None:
        super().__init__()
        self.coding = coding

    def log_prob(self, params: Tensor, showers: Tensor, incident_energies: Tensor) -> Tensor:
        """``log p(showers | params)`` per shower ``(N,)``."""
        params = params.float()
        logit, mu, log_sigma = params.unbind(-1)
        log_sigma = log_sigma.clamp(-5.0, 3.0)
        hit = (showers >= self.coding.cut_mev).float()
        bernoulli = -F.binary_cross_entropy_with_logits(logit, hit, reduction="none")
        y = self.coding(showers, incident_energies)
        gauss = -0.5 * ((y - mu) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return (bernoulli + hit * gauss).sum(-1)

    def sample(
        self, params: Tensor, incident_energies: Tensor, uniform: Tensor | None = None, normal: Tensor | None = None
    ) -> Tensor:
        """Draw showers ``(N, V)`` MeV: hits from the Bernoulli, energies >= the cut from the Gaussian.

        ``uniform`` and ``normal`` (``(N, V)`` each) are the random numbers to use; drawn here if None.
        """
        params = params.float()
        logit, mu, log_sigma = params.unbind(-1)
        uniform = torch.rand_like(logit) if uniform is None else uniform
        normal = torch.randn_like(mu) if normal is None else normal
        hit = uniform < torch.sigmoid(logit)
        y = mu + log_sigma.clamp(-5.0, 3.0).exp() * normal
        energy = self.coding.inverse(y, incident_energies).clamp_min(self.coding.cut_mev)
        return torch.where(hit, energy, torch.zeros_like(energy))
