"""Diffusion samplers on a Gaussian toy, whose optimal denoiser and exact ODE solution are known."""

from __future__ import annotations

import math

import pytest
import torch

from calosurrogate.models.diffusion.samplers import SAMPLERS, karras_sigmas, network_calls, sample

MU, S, SIGMA_MAX = 1.5, 0.7, 80.0


def optimal_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x0 | x] for x0 ~ N(MU, S^2) and x = x0 + sigma n."""
    shrink = (S**2 / (S**2 + sigma**2)).reshape(-1, 1)
    return MU + shrink * (x - MU)


def exact_transport(noise: torch.Tensor) -> torch.Tensor:
    """Where the probability-flow ODE takes x = SIGMA_MAX * noise at sigma = 0."""
    return MU + (SIGMA_MAX * noise - MU) * S / math.sqrt(S**2 + SIGMA_MAX**2)


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(4_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_schedule_is_decreasing_and_ends_at_zero() -> None:
    sigmas = karras_sigmas(10, 0.002, 80.0)
    assert len(sigmas) == 11 and sigmas[0] == pytest.approx(80.0) and sigmas[-2] == pytest.approx(0.002)
    assert sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())


@pytest.mark.parametrize("sampler", ["euler", "heun", "rk4", "dpm2m"])
def test_deterministic_samplers_follow_the_exact_ode(sampler, noise) -> None:
    errors = {}
    for steps in (32, 128):
        x = sample(optimal_denoiser, noise, steps, sampler, sigma_max=SIGMA_MAX)
        errors[steps] = float((x - exact_transport(noise)).abs().max())
    assert errors[128] < 0.5 * errors[32]  # converges with the number of steps
    assert errors[128] < 0.07
    exact = exact_transport(noise)
    assert float(x.mean()) == pytest.approx(float(exact.mean()), abs=0.02)
    assert float(x.std()) == pytest.approx(float(exact.std()), abs=0.02)


def test_higher_order_samplers_are_more_accurate_per_step(noise) -> None:
    error = {s: float((sample(optimal_denoiser, noise, 32, s, sigma_max=SIGMA_MAX) - exact_transport(noise)).abs().max())
             for s in ("euler", "heun", "dpm2m", "rk4")}  # fmt: skip
    assert error["heun"] < 0.3 * error["euler"] and error["dpm2m"] < 0.3 * error["euler"]
    assert error["rk4"] < 0.1 * error["heun"]


def test_ancestral_sampler_reaches_the_data_distribution(noise) -> None:
    torch.manual_seed(1)
    x = sample(optimal_denoiser, noise, 200, "ddpm", sigma_max=SIGMA_MAX)
    assert float(x.mean()) == pytest.approx(MU, abs=0.035) and float(x.std()) == pytest.approx(S, abs=0.035)
    # Stochastic: not the deterministic transport of its starting noise.
    assert float((x - exact_transport(noise)).abs().mean()) > 0.1


def test_second_order_ancestral_sampler_is_closer_to_the_data_in_few_steps() -> None:
    """DPM-Solver++(2M) SDE draws the same fresh noise as DDPM and corrects its first-order
    step: at 32 steps DDPM's spread is 15% short, the second-order one within 6%."""
    noise = torch.randn(100_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fresh = torch.randn(32, 100_000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    spread = {s: float(sample(optimal_denoiser, noise, 32, s, sigma_max=SIGMA_MAX, ancestral_noise=fresh).std())
              for s in ("ddpm", "dpm2m-sde")}  # fmt: skip
    assert abs(spread["ddpm"] - S) > 0.12 * S
    assert abs(spread["dpm2m-sde"] - S) < 0.06 * S
    torch.manual_seed(1)
    x = sample(optimal_denoiser, noise, 200, "dpm2m-sde", sigma_max=SIGMA_MAX)
    assert float(x.mean()) == pytest.approx(MU, abs=0.01) and float(x.std()) == pytest.approx(S, abs=0.01)


def test_analytic_variance_makes_few_ancestral_steps_exact_on_a_gaussian(noise) -> None:
    """With Var[x0 | x] known (Gaussian data: S^2 sigma^2 / (S^2 + sigma^2)) every ancestral step
    draws the exact conditional, so even 3 steps give the data's spread; DDPM's is far off."""
    noise = torch.cat([noise] * 25)[:, :1]  # 100,000 rows
    fresh = torch.randn(3, len(noise), 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def variance(sigma: float) -> torch.Tensor:
        return torch.tensor([S**2 * sigma**2 / (S**2 + sigma**2)], dtype=torch.float64)

    analytic = sample(optimal_denoiser, noise, 3, "analytic-ddpm", sigma_max=SIGMA_MAX, ancestral_noise=fresh,
                      posterior_variance=variance)  # fmt: skip
    plain = sample(optimal_denoiser, noise, 3, "ddpm", sigma_max=SIGMA_MAX, ancestral_noise=fresh)
    assert float(analytic.mean()) == pytest.approx(MU, abs=0.01) and float(analytic.std()) == pytest.approx(S, rel=0.01)
    assert float(plain.std()) < 0.6 * S
    with pytest.raises(ValueError, match="analytic-ddpm"):
        sample(optimal_denoiser, noise, 3, "analytic-ddpm", sigma_max=SIGMA_MAX)
    with pytest.raises(ValueError, match="analytic-ddpm"):
        sample(optimal_denoiser, noise, 3, "ddpm", sigma_max=SIGMA_MAX, posterior_variance=variance)


def test_posterior_variance_table_is_the_denoisers_error() -> None:
    """Measured with the optimal denoiser of Gaussian data (two dimensions of different spread), the
    table is Var[x0 | x] = s^2 sigma^2 / (s^2 + sigma^2) of each, at every level in between."""
    from calosurrogate.models.diffusion.variance import PosteriorVariance

    spreads = torch.tensor([0.3, 2.0])
    codes = torch.randn(40_000, 2, generator=torch.Generator().manual_seed(0)) * spreads

    def denoiser(context: torch.Tensor):
        return lambda x, sigma: spreads**2 / (spreads**2 + sigma[:, None] ** 2) * x

    table = PosteriorVariance(2, 0.002, SIGMA_MAX, n_levels=16)
    assert not bool(table.calibrated)
    table.fit(denoiser, codes, torch.zeros(40_000, 1), batch_size=7_000)
    assert bool(table.calibrated)
    for sigma in (0.01, 0.5, 3.0, 50.0):  # interpolated between the 16 measured levels
        exact = spreads**2 * sigma**2 / (spreads**2 + sigma**2)
        assert torch.allclose(table(sigma), exact, rtol=0.05), (sigma, table(sigma), exact)


def test_network_call_counts_and_bad_sampler() -> None:
    assert network_calls(10, "euler") == 10 and network_calls(10, "heun") == 19 and network_calls(10, "rk4") == 37
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(optimal_denoiser, torch.zeros(2, 2), 4, "leapfrog")
    assert set(SAMPLERS) == {"euler", "heun", "rk4", "dpm2m", "ddpm", "dpm2m-sde", "analytic-ddpm"}
