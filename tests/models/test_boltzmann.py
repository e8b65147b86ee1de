"""Boltzmann-machine prior and its samplers against exact enumeration on small machines."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from calosurrogate.models.boltzmann import BoltzmannMachine
from calosurrogate.models.boltzmann_samplers import (
    AnnealingSampler,
    GibbsSampler,
    QuantumAnnealerSampler,
    SamplerUnavailableError,
    estimate_effective_beta,
    exact_distribution,
    make_sampler,
)

HAS_DWAVE = importlib.util.find_spec("dwave.samplers") is not None


def _machine(layout: str, units: int, seed: int = 0) -> BoltzmannMachine:
    torch.manual_seed(seed)
    machine = BoltzmannMachine.from_layout(layout, units, n_conditions=1)
    with torch.no_grad():  # strong enough couplings that the distribution is far from uniform
        machine.bias.normal_(0.0, 0.8)
        for w in machine.weights:
            w.normal_(0.0, 0.8)
        machine.condition_field.weight.normal_(0.0, 0.5)
    return machine


def _empirical(states: torch.Tensor) -> torch.Tensor:
    n = states.shape[1]
    codes = (states.long() << torch.arange(n)).sum(1)
    return torch.bincount(codes, minlength=2**n).double() / len(states)


def _chi2_pvalue(states: torch.Tensor, exact: torch.Tensor) -> float:
    """Pearson chi-square goodness of fit of sampled states to exact probabilities (states
    expected fewer than 5 times pooled into one bin)."""
    observed = (_empirical(states) * len(states)).numpy()
    expected = exact.numpy() * len(states)
    small = expected < 5
    observed = np.append(observed[~small], observed[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    return float(chisquare(observed, expected * observed.sum() / expected.sum()).pvalue)


def test_energy_matches_hand_computation() -> None:
    machine = BoltzmannMachine((2, 1), ((0, 1),), n_conditions=1)
    with torch.no_grad():
        machine.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        machine.weights[0].copy_(torch.tensor([[1.5], [-0.5]]))
        machine.condition_field.weight.copy_(torch.tensor([[1.0], [0.0], [0.0]]))
    z = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    fields = machine.fields(torch.tensor([[0.25], [0.25]]))
    # E = -(b + F c).z - z0^T W z1
    expected = torch.tensor([-(0.75 - 1.0 + 2.0) - (1.5 - 0.5), -0.75])
    torch.testing.assert_close(machine.energy(z, fields), expected)


@pytest.mark.parametrize("layout, units", [("bipartite", 4), ("four-partite", 2)])
def test_gibbs_matches_exact_boltzmann_distribution(layout, units) -> None:
    machine = _machine(layout, units)
    fields = machine.fields(torch.tensor([[0.3]])).detach()
    _, exact = exact_distribution(machine, fields[0])
    torch.manual_seed(1)
    states = GibbsSampler(sweeps=50).sample(machine, fields.expand(20_000, -1))
    assert _chi2_pvalue(states, exact) > 1e-3
    # ... and the same test sees a sampler at the wrong temperature.
    hot = GibbsSampler(sweeps=50).sample(machine, fields.expand(20_000, -1), beta=0.7)
    assert _chi2_pvalue(hot, exact) < 1e-6


@pytest.mark.skipif(not HAS_DWAVE, reason="dwave-samplers not installed (extra 'dwave')")
def test_simulated_annealing_matches_exact_boltzmann_distribution() -> None:
    machine = _machine("bipartite", 4)
    fields = machine.fields(torch.tensor([[0.3]])).detach()
    _, exact = exact_distribution(machine, fields[0])
    states = AnnealingSampler(sweeps=200, seed=3).sample(machine, fields.expand(5_000, -1))
    assert _chi2_pvalue(states, exact) > 1e-3


def test_effective_beta_recovers_the_temperature_of_samples() -> None:
    machine = _machine("bipartite", 4)
    fields = machine.fields(torch.tensor([[0.3]])).detach().expand(4000, -1)
    torch.manual_seed(2)
    for true_beta in (1.0, 0.5):
        samples = GibbsSampler(sweeps=50).sample(machine, fields, beta=true_beta)
        beta, error = estimate_effective_beta(machine, fields, samples, gibbs_sweeps=50)
        assert 0 < error < 0.2
        assert abs(beta - true_beta) < 4 * error + 0.02, (beta, true_beta, error)


def test_quantum_sampler_without_configuration_says_what_is_missing(monkeypatch) -> None:
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    machine = _machine("bipartite", 2)
    with pytest.raises(SamplerUnavailableError, match=r"dwave-system|DWAVE_API_TOKEN"):
        QuantumAnnealerSampler().sample(machine, machine.fields(torch.zeros(3, 1)).detach())


def test_unknown_sampler_and_layout_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown prior sampler"):
        make_sampler("metropolis")
    with pytest.raises(ValueError, match="unknown Boltzmann machine layout"):
        BoltzmannMachine.from_layout("three-partite", 4, 1)
