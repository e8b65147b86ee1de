"""Samplers of a :class:`~calosurrogate.models.boltzmann.BoltzmannMachine`, kept apart from the machine.

Each sampler draws one binary state per row of fields ``(N, n_units)`` from
``p(z) ~ exp(-beta E(z))``:

- :class:`GibbsSampler` (default): block Gibbs, one partition at a time; also the engine of
  persistent contrastive divergence (Tieleman, ICML 2008) during training.
- :class:`AnnealingSampler`: simulated annealing with D-Wave's open-source ``dwave-samplers``
  (``pip install calosurrogate[dwave]``); the schedule ends at the target ``beta``.
- :class:`QuantumAnnealerSampler`: a D-Wave quantum annealer through ``dwave-system``, used only
  when the user has Leap access configured; otherwise a clear error says what is missing.

:func:`estimate_effective_beta` measures the inverse temperature at which a sampler's states
look Boltzmann-distributed under the machine, by maximum likelihood (matching the mean energy,
Raymond et al., arXiv:1606.00919), as Calo4pQVAE (arXiv:2410.22870) does for its annealer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from calosurrogate.models.boltzmann import BoltzmannMachine


class SamplerUnavailableError(RuntimeError):
    """A sampler's package or service is not available here."""


class PriorSampler(Protocol):
    """What every sampler offers."""

    def sample(self, machine: BoltzmannMachine, fields: Tensor, beta: float = 1.0) -> Tensor:
        """One binary state ``(N, n_units)`` (float 0/1) per row of ``fields``."""
        ...


@dataclass
class GibbsSampler:
    """Block Gibbs sampling: each sweep resamples every partition given the others.

    Attributes:
        sweeps: Sweeps from a uniformly random start (or from ``initial``).
    """

    sweeps: int = 200

    @torch.no_grad()
    def sample(
        self, machine: BoltzmannMachine, fields: Tensor, beta: float = 1.0, initial: Tensor | None = None
    ) -> Tensor:
        fields = fields.float()
        start = initial.float() if initial is not None else torch.bernoulli(torch.full_like(fields, 0.5))
        parts = machine.split(start)
        for _ in range(self.sweeps):
            for p in range(len(parts)):
                parts[p] = torch.bernoulli(torch.sigmoid(beta * machine.local_field(p, parts, fields)))
        return torch.cat(parts, dim=-1)


def _grouped_rows(fields: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct rows of ``fields`` and, for each input row, the index of its distinct row."""
    unique, inverse = torch.unique(fields.detach().float().cpu(), dim=0, return_inverse=True)
    return unique, inverse


def _dimod_samples(sampleset, n_units: int) -> np.ndarray:
    order = [list(sampleset.variables).index(i) for i in range(n_units)]
    return np.asarray(sampleset.record.sample)[:, order].astype(np.float32)


@dataclass
class AnnealingSampler:
    """Simulated annealing with ``dwave.samplers.SimulatedAnnealingSampler``.

    The geometric schedule runs from ``beta * start_fraction`` to ``beta``; rows with identical
    fields share one call (``num_reads`` = their count). One call per distinct condition makes
    this far slower than Gibbs for continuous conditions: it is meant for studies of the
    annealing route, not for mass production.

    Attributes:
        sweeps: Metropolis sweeps per read.
        start_fraction: First inverse temperature of the schedule, as a fraction of ``beta``.
        seed: Seed of the annealer.
    """

    sweeps: int = 1000
    start_fraction: float = 0.1
    seed: int = 0

    def sample(self, machine: BoltzmannMachine, fields: Tensor, beta: float = 1.0) -> Tensor:
        try:
            import dimod
            from dwave.samplers import SimulatedAnnealingSampler
        except ImportError as err:
            raise SamplerUnavailableError(
                "the annealing sampler needs D-Wave's open-source packages: pip install 'calosurrogate[dwave]' "
                "(dimod, dwave-samplers)"
            ) from err
        sampler = SimulatedAnnealingSampler()
        unique, inverse = _grouped_rows(fields)
        out = torch.empty(len(fields), machine.n_units)
        for k, row in enumerate(unique):
            rows = torch.nonzero(inverse == k).flatten()
            bqm = dimod.BinaryQuadraticModel(*machine.to_bqm_terms(row), 0.0, "BINARY")
            result = sampler.sample(
                bqm, num_reads=len(rows), num_sweeps=self.sweeps, beta_range=(beta * self.start_fraction, beta),
                beta_schedule_type="geometric", seed=(self.seed + k) % 2**31,
            )  # fmt: skip
            out[rows] = torch.from_numpy(_dimod_samples(result, machine.n_units))
        return out.to(fields.device)


@dataclass
class QuantumAnnealerSampler:
    """A D-Wave quantum annealer (``dwave.system.DWaveSampler`` with minor embedding).

    Needs ``pip install dwave-system`` and a Leap API token (environment variable
    ``DWAVE_API_TOKEN`` or ``dwave config create``). The annealer samples at its own effective
    inverse temperature ``beta_eff``; the problem is divided by ``beta_eff / beta`` so that its
    states follow the machine at ``beta`` (estimate ``beta_eff`` with
    :func:`estimate_effective_beta`).

    Attributes:
        beta_effective: The annealer's effective inverse temperature for this machine.
        solver: Solver name (None: the account's default).
    """

    beta_effective: float = 1.0
    solver: str | None = None

    def _client(self):
        try:
            from dwave.system import DWaveSampler, EmbeddingComposite
        except ImportError as err:
            raise SamplerUnavailableError(
                "the quantum-annealer sampler needs D-Wave's Ocean SDK (pip install dwave-system) and a Leap API "
                "token; use sampler='gibbs' (default) or 'annealing' instead"
            ) from err
        token = os.environ.get("DWAVE_API_TOKEN")
        if not token:
            try:
                from dwave.cloud.config import load_config

                token = load_config().get("token")
            except Exception:  # any failure to read a config means: not configured
                token = None
        if not token:
            raise SamplerUnavailableError(
                "no D-Wave Leap access is configured: set DWAVE_API_TOKEN or run `dwave config create`; "
                "use sampler='gibbs' (default) or 'annealing' instead"
            )
        solver = {"name": self.solver} if self.solver else None
        return EmbeddingComposite(DWaveSampler(token=token, solver=solver))

    def sample(self, machine: BoltzmannMachine, fields: Tensor, beta: float = 1.0) -> Tensor:
        import dimod

        client = self._client()
        scale = beta / self.beta_effective
        unique, inverse = _grouped_rows(fields)
        out = torch.empty(len(fields), machine.n_units)
        for k, row in enumerate(unique):
            rows = torch.nonzero(inverse == k).flatten()
            bqm = dimod.BinaryQuadraticModel(*machine.to_bqm_terms(row), 0.0, "BINARY")
            bqm.scale(scale)
            result = client.sample(bqm, num_reads=len(rows), auto_scale=False)
            out[rows] = torch.from_numpy(_dimod_samples(result, machine.n_units))
        return out.to(fields.device)


SAMPLERS = {"gibbs": GibbsSampler, "annealing": AnnealingSampler, "quantum": QuantumAnnealerSampler}


def make_sampler(name: str, sweeps: int | None = None) -> PriorSampler:
    """A sampler by name (``gibbs``, ``annealing``, ``quantum``)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown prior sampler {name!r}; use one of {sorted(SAMPLERS)}")
    if sweeps is not None and name in ("gibbs", "annealing"):
        return SAMPLERS[name](sweeps=sweeps)
    return SAMPLERS[name]()


@torch.no_grad()
def exact_distribution(machine: BoltzmannMachine, fields_row: Tensor, beta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Every state ``(2^n, n)`` and its exact probability, for machines of at most 20 units."""
    n = machine.n_units
    if n > 20:
        raise ValueError(f"exact enumeration of {n} units (2^{n} states) is too large; at most 20")
    codes = torch.arange(2**n)
    states = ((codes[:, None] >> torch.arange(n)) & 1).float()
    energies = machine.energy(states, fields_row.float().reshape(1, -1).expand(2**n, -1))
    return states, torch.softmax(-beta * energies.double(), dim=0)


@torch.no_grad()
def estimate_effective_beta(
    machine: BoltzmannMachine,
    fields: Tensor,
    samples: Tensor,
    gibbs_sweeps: int = 200,
    low: float = 0.02,
    high: float = 50.0,
    iterations: int = 30,
    seed: int = 0,
) -> tuple[float, float]:
    """Inverse temperature ``beta`` at which the machine's mean energy equals the samples'.

    For states believed to follow ``exp(-beta E)``, this is the maximum-likelihood ``beta``:
    the mean energy falls monotonically with ``beta``, so it is found by bisection in
    ``log beta``, each step estimating ``<E>_beta`` with block Gibbs chains at the samples'
    own fields (the same random numbers at every step, so the bisection is monotone).

    Args:
        fields: ``(N, n_units)`` fields the samples were drawn with.
        samples: ``(N, n_units)`` binary states from the sampler under study.

    Returns:
        ``(beta, error)``, the error from the samples' energy spread through ``d<E>/dbeta = -Var(E)``.
    """
    target = machine.energy(samples, fields)
    sampler = GibbsSampler(gibbs_sweeps)

    def moments(beta: float) -> tuple[float, float]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            energies = machine.energy(sampler.sample(machine, fields, beta), fields)
        return float(energies.mean()), float(energies.var())

    lo, hi = math.log(low), math.log(high)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if moments(math.exp(mid))[0] > float(target.mean()):
            lo = mid  # too hot: the machine's energy is above the samples'
        else:
            hi = mid
    beta = math.exp(0.5 * (lo + hi))
    _, variance = moments(beta)
    error = float(target.std()) / math.sqrt(len(target)) / max(variance, 1e-12)
    return beta, error


__all__ = [
    "SAMPLERS",
    "AnnealingSampler",
    "GibbsSampler",
    "PriorSampler",
    "QuantumAnnealerSampler",
    "SamplerUnavailableError",
    "estimate_effective_beta",
    "exact_distribution",
    "make_sampler",
]
