"""Family-specific behaviour beyond the shared contract (GAN steps, QVAE prior)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from calosurrogate.models import ConfigError, build_surrogate
from calosurrogate.models.boltzmann_samplers import GibbsSampler

CONDS = ("incident_energies",)


def _data(n: int = 64, voxels: int = 36) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    incident = torch.exp(torch.empty(n, 1).uniform_(np.log(1e3), np.log(1e5)))
    showers = torch.rand(n, voxels) * incident / voxels * (torch.rand(n, voxels) < 0.6)
    return showers, incident


def _updates_recorder(model):
    calls = []

    def update(name, loss):
        calls.append(name)
        params = model.optimizer_groups()[name][0]
        for p in model.parameters():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p -= 1e-3 * p.grad

    return calls, update


def test_wgan_critic_every_batch_generator_every_n_critic(tiny_geometry) -> None:
    model = build_surrogate("wgan", tiny_geometry, {"hidden": 16, "critic_hidden": 16, "latent": 4, "n_critic": 3})
    showers, incident = _data()
    model.fit_preprocessing(showers, incident)
    calls, update = _updates_recorder(model)
    generator_before = [p.detach().clone() for p in model.generator.parameters()]
    model.training_step(showers, incident, update)  # a critic step leaves the generator alone
    assert calls == ["critic"]
    assert all(torch.equal(a, b) for a, b in zip(generator_before, model.generator.parameters(), strict=True))
    for _ in range(5):
        logged = model.training_step(showers, incident, update)
    assert calls == ["critic", "critic", "critic", "generator"] * 2
    assert {"loss", "gradient_penalty", "spread_ratio"} <= set(logged)
    groups = model.optimizer_groups()
    assert groups["critic"][1]["betas"] == (0.5, 0.9)
    assert not {id(p) for p in groups["critic"][0]} & {id(p) for p in groups["generator"][0]}


def test_gradient_penalty_is_zero_for_a_unit_slope_critic(tiny_geometry) -> None:
    model = build_surrogate("wgan", tiny_geometry, {"critic_hidden": 8, "critic_layers": 1})
    with torch.no_grad():  # make the critic linear with a unit-norm gradient: D(x) = u.x
        for p in model.critic.parameters():
            p.zero_()
        u = torch.randn(tiny_geometry.n_voxels)
        model.critic[0].weight[0, : tiny_geometry.n_voxels] = u / u.norm()
        model.critic[2].weight[0, 0] = 1.0
    model.critic[1] = torch.nn.Identity()
    real, fake = torch.randn(16, tiny_geometry.n_voxels), torch.randn(16, tiny_geometry.n_voxels)
    penalty = model._gradient_penalty(real, fake, torch.zeros(16, 1), torch.full((16, 1), 1e4))
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)


def test_wgan_critic_sees_layer_and_total_energy_fractions(tiny_geometry) -> None:
    model = build_surrogate("wgan", tiny_geometry, {"hidden": 16, "critic_hidden": 16, "latent": 4})
    showers, incident = _data()
    model.fit_preprocessing(showers, incident)
    features = model._energy_features(showers, incident)
    offsets = tiny_geometry.layer_offsets.tolist()
    for layer, (a, b) in enumerate(itertools.pairwise(offsets)):
        expected = torch.log(showers[:, a:b].sum(1) / incident[:, 0] + 1e-6)
        torch.testing.assert_close(features[:, layer], expected)
    torch.testing.assert_close(features[:, -1], showers.sum(1) / incident[:, 0])
    # The critic's input grows by these features, and they come from the codes it is given.
    assert model.critic[0].in_features == tiny_geometry.n_voxels + 1 + tiny_geometry.n_layers + 1
    codes = model.coding(showers, incident)
    decoded = model._energy_features(model.coding.inverse(codes, incident), incident)
    torch.testing.assert_close(decoded[:, -1], features[:, -1], rtol=1e-4, atol=1e-5)


def test_qvae_gibbs_prior_sampler_has_effective_beta_one(tiny_geometry) -> None:
    model = build_surrogate("qvae", tiny_geometry, {"hidden": 16, "units_per_partition": 4, "sampler_sweeps": 50})
    showers, incident = _data()
    model.fit_preprocessing(showers, incident)
    with torch.no_grad():
        for w in model.prior.weights:
            w.normal_(0.0, 0.7)
        model.prior.bias.normal_(0.0, 0.7)
    conditions = torch.full((3000, 1), 1e4)
    beta, error = model.effective_beta(conditions)
    assert abs(beta - 1.0) < 4 * error + 0.03
    hot_beta, _ = model.effective_beta(conditions, _HotGibbs())
    assert hot_beta < 0.8


class _HotGibbs:
    def sample(self, machine, fields, beta=1.0):
        return GibbsSampler(50).sample(machine, fields, beta=0.5 * beta)


def test_qvae_training_moves_the_persistent_chains(tiny_geometry) -> None:
    model = build_surrogate("qvae", tiny_geometry, {"hidden": 16, "units_per_partition": 4, "pcd_chains": 32})
    showers, incident = _data()
    model.fit_preprocessing(showers, incident)
    before = model.chains.clone()
    model.eval()
    model.loss(showers, incident)
    assert torch.equal(model.chains, before)  # evaluation leaves the chains alone
    model.train()
    model.loss(showers, incident)
    assert not torch.equal(model.chains, before)


def test_bad_family_configs_are_refused(tiny_geometry) -> None:
    with pytest.raises(ConfigError, match="layout"):
        build_surrogate("qvae", tiny_geometry, {"layout": "tripartite"})
    with pytest.raises(ConfigError, match="sampler"):
        build_surrogate("qvae", tiny_geometry, {"sampler": "metropolis"})
    with pytest.raises(ConfigError, match="reconstruction"):
        build_surrogate("vae", tiny_geometry, {"reconstruction": "poisson"})
    from calosurrogate.geometry import get_geometry

    with pytest.raises(ValueError, match="irregular"):
        build_surrogate("vae", get_geometry("ds1-photons"), {"architecture": "conv"})


@pytest.mark.parametrize(
    ("family", "options"), [("vae", {"latent": 4}), ("qvae", {"units_per_partition": 4, "sampler_sweeps": 5})]
)
@pytest.mark.parametrize("occupancy", [False, True])
def test_two_stage_showers_hold_the_drawn_layer_energies_through_the_cut(family, options, occupancy, tiny_geometry):
    """CaloFlow's two stages in the VAE families: whatever the (here untrained) decoder draws, each
    layer ends holding the energy the first stage drew for it, and a layer drawn below the cut
    ends empty: the total and layer energies are the flow's alone."""
    showers, incident = _data(400)
    showers[:100, 12:] = 0.0  # deep layers empty in some showers, as at low energy
    config = {"hidden": 16, "layer_energies": True, "occupancy": occupancy, **options}
    model = build_surrogate(family, tiny_geometry, config)
    model.fit_preprocessing(showers, incident)
    loss = model.loss(showers, incident)
    loss.mean().backward()
    assert loss.shape == (400,) and all(p.grad is not None for p in model.first_stage.parameters())
    model.eval()
    with torch.no_grad():
        noise = model.sample_noise(incident)
        sampled = model.showers_from_noise(incident, *noise)
        stage_inputs = noise[1 : 2 + occupancy]  # after the latents (vae) or the prior's states (qvae)
        drawn = model.first_stage.sample(model.conditions_map(incident), incident, *stage_inputs)
    counted = model.first_stage.decomposition.layer_energies(sampled)
    visible = drawn >= model.cut
    assert visible.any() and not visible.all()
    assert torch.allclose(counted[visible], drawn[visible], rtol=1e-5)
    assert (counted[~visible] == 0).all()
    assert sampled[sampled > 0].min() >= model.cut
    if occupancy:  # the layers the occupancy leaves empty are exactly empty, not a trace
        assert (drawn == 0).any()


def test_occupancy_needs_the_layer_energy_stage_in_the_vae_families(tiny_geometry) -> None:
    for family in ("vae", "qvae"):
        with pytest.raises(ConfigError, match="set layer_energies too"):
            build_surrogate(family, tiny_geometry, {"occupancy": True})
