"""Multipartite Boltzmann machines over binary units: the prior of the quantum-assisted VAE.

Units are split into partitions with no couplings inside a partition, so every partition can be
sampled in one block given the others (block Gibbs), and the coupling graph maps onto a quantum
annealer's qubits. Two layouts are built in: the restricted Boltzmann machine (two partitions,
Khoshaman et al., "Quantum variational autoencoder", arXiv:1802.05779) and the four-partite
machine of Calo4pQVAE (Lu, Toledo-Marin et al., arXiv:2410.22870), where every pair of the four
partitions is coupled.

Energy of a state ``z`` (binary, ``(N, n_units)``) under conditions mapped to ``c``::

    E(z; c) = - sum_p (b_p + F_p c) . z_p - sum_{p < q} z_p^T W_pq z_q

The condition enters as a linear field ``F c`` on the units. Clamping some units to a binary
code of the incident energy (as in Calo4pQVAE's conditioned sampling) is a special case: the
clamped units act on the others through exactly such fields. Samplers live in
:mod:`calosurrogate.models.boltzmann_samplers`.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

LAYOUTS = ("bipartite", "four-partite")


class BoltzmannMachine(nn.Module):
    """A conditional multipartite Boltzmann machine (see module docstring).

    Args:
        partition_sizes: Units per partition.
        couplings: Coupled partition pairs ``(p, q)`` with ``p < q``.
        n_conditions: Width of the (mapped) condition vector.
        init_scale: Standard deviation of the initial couplings.
    """

    def __init__(
        self,
        partition_sizes: tuple[int, ...],
        couplings: tuple[tuple[int, int], ...],
        n_conditions: int,
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        if any(p >= q for p, q in couplings):
            raise ValueError(f"couplings must be pairs (p, q) with p < q, got {couplings}")
        self.partition_sizes = tuple(int(n) for n in partition_sizes)
        self.couplings = tuple((int(p), int(q)) for p, q in couplings)
        self.bias = nn.Parameter(torch.zeros(self.n_units))
        self.weights = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(self.partition_sizes[p], self.partition_sizes[q]))
            for p, q in self.couplings
        )
        self.condition_field = nn.Linear(n_conditions, self.n_units, bias=False)
        nn.init.zeros_(self.condition_field.weight)

    @classmethod
    def from_layout(cls, layout: str, units_per_partition: int, n_conditions: int) -> BoltzmannMachine:
        """``"bipartite"`` (an RBM) or ``"four-partite"`` (all six pairs of four partitions coupled)."""
        if layout == "bipartite":
            return cls((units_per_partition,) * 2, ((0, 1),), n_conditions)
        if layout == "four-partite":
            return cls((units_per_partition,) * 4, tuple(itertools.combinations(range(4), 2)), n_conditions)
        raise ValueError(f"unknown Boltzmann machine layout {layout!r}; use one of {LAYOUTS}")

    @property
    def n_units(self) -> int:
        """Total number of binary units."""
        return sum(self.partition_sizes)

    @property
    def offsets(self) -> list[int]:
        """Start of each partition in the flat unit vector (plus the end)."""
        return [0, *itertools.accumulate(self.partition_sizes)]

    def split(self, z: Tensor) -> list[Tensor]:
        """Flat states ``(N, n_units)`` -> one ``(N, n_p)`` tensor per partition."""
        return list(torch.split(z, self.partition_sizes, dim=-1))

    def fields(self, conditions: Tensor) -> Tensor:
        """Linear fields on every unit ``(N, n_units)`` for mapped conditions ``(N, K)``."""
        return self.bias + self.condition_field(conditions.float())

    def energy(self, z: Tensor, fields: Tensor) -> Tensor:
        """``E(z)`` per row ``(N,)`` for states ``z`` (binary or relaxed in [0, 1]) and fields ``(N, n_units)``."""
        z = z.float()
        parts = self.split(z)
        energy = -(fields * z).sum(-1)
        for (p, q), w in zip(self.couplings, self.weights, strict=True):
            energy = energy - ((parts[p] @ w) * parts[q]).sum(-1)
        return energy

    def local_field(self, partition: int, parts: list[Tensor], fields: Tensor) -> Tensor:
        """Field on partition ``partition`` given the others: ``-dE/dz_p``, ``(N, n_p)``."""
        lo, hi = self.offsets[partition], self.offsets[partition + 1]
        field = fields[:, lo:hi].clone()
        for (p, q), w in zip(self.couplings, self.weights, strict=True):
            if p == partition:
                field = field + parts[q] @ w.T
            elif q == partition:
                field = field + parts[p] @ w
        return field

    @torch.no_grad()
    def to_bqm_terms(self, fields_row: Tensor) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
        """Linear and quadratic terms of ``E`` for one row of fields, in the binary (0/1) form
        that D-Wave's ``dimod.BinaryQuadraticModel(linear, quadratic, 0.0, "BINARY")`` takes."""
        linear = {i: -float(v) for i, v in enumerate(fields_row.float().cpu())}
        quadratic: dict[tuple[int, int], float] = {}
        offsets = self.offsets
        for (p, q), w in zip(self.couplings, self.weights, strict=True):
            w = w.detach().float().cpu()
            for i, j in torch.nonzero(w, as_tuple=False).tolist():
                quadratic[(offsets[p] + i, offsets[q] + j)] = -float(w[i, j])
        return linear, quadratic


__all__ = ["LAYOUTS", "BoltzmannMachine"]
