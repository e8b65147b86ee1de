"""The diffusion family's objectives, each turned into EDM's denoiser: checked with the analytic
optimum of a Gaussian toy, where every objective's ideal network output is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from calosurrogate.data.transforms import dequantize
from calosurrogate.models import ConfigError, build_surrogate
from calosurrogate.models.diffusion import OBJECTIVES
from calosurrogate.models.diffusion.backbones import LinearAttention3d
from calosurrogate.models.diffusion.objectives import alpha_bar

S = 0.8  # the toy data: x0 ~ N(0, S^2) in every dimension


class OptimalNetwork(nn.Module):
    """The minimiser of each objective's loss for Gaussian data (what a perfect network outputs)."""

    def __init__(self, objective: str, sigma_data: float) -> None:
        super().__init__()
        self.objective, self.sigma_data = objective, sigma_data

    def forward(self, x: torch.Tensor, level: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        level = level.reshape(-1, 1)
        if self.objective == "edm":  # x is c_in * x_VE, level = ln(sigma) / 4
            sigma, sd = torch.exp(4 * level), self.sigma_data
            x_ve = x * (sigma**2 + sd**2).sqrt()
            c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt()
            return (S**2 / (S**2 + sigma**2) * x_ve - c_skip * x_ve) / c_out
        if self.objective == "flow-matching":  # x = x_t = (1 - t) x0 + t eps, level = t
            t = level
            variance = (1 - t) ** 2 * S**2 + t**2
            return (t - (1 - t) * S**2) / variance * x
        a = alpha_bar(level)
        variance = a * S**2 + 1 - a
        eps = (1 - a).sqrt() / variance * x
        if self.objective == "ddpm":
            return eps
        x0 = a.sqrt() * S**2 / variance * x
        return a.sqrt() * eps - (1 - a).sqrt() * x0


@pytest.mark.parametrize("objective", [name for name in OBJECTIVES if name != "spike-slab"])  # its own tests below
def test_each_objective_gives_the_optimal_denoiser(objective, tiny_geometry) -> None:
    config = {
        "objective": {"name": objective},
        "backbone": {"hidden": 8, "blocks": 1},
        "sampling": {"clip_denoised": False},
    }
    model = build_surrogate("diffusion", tiny_geometry, config)
    model.net = OptimalNetwork(objective, model.config.objective.sigma_data)
    denoise = model.denoiser(torch.zeros(5, 1))
    for sigma in (0.05, 0.7, 3.0, 40.0):
        x = torch.randn(5, tiny_geometry.n_voxels, dtype=torch.float64).float() * math.sqrt(S**2 + sigma**2)
        expected = S**2 / (S**2 + sigma**2) * x
        torch.testing.assert_close(denoise(x, torch.full((5,), sigma)), expected, rtol=2e-3, atol=2e-4)


def test_sampling_options_are_validated_and_change_the_noise(tiny_geometry) -> None:
    model = build_surrogate("diffusion", tiny_geometry, {"backbone": {"hidden": 8, "blocks": 1}})
    model.configure_sampling(sampler="ddpm", steps=5)
    noise = model.sample_noise(torch.full((3, 1), 1e4))
    assert len(noise) == 2 and noise[1].shape == (5, 3, tiny_geometry.n_voxels)  # fresh noise per ancestral step
    model.configure_sampling(sampler="euler")
    assert len(model.sample_noise(torch.full((3, 1), 1e4))) == 1
    with pytest.raises(ConfigError, match="sampler"):
        model.configure_sampling(sampler="leapfrog")
    with pytest.raises(ConfigError, match="unknown sampling option"):
        model.configure_sampling(eta=0.5)
    with pytest.raises(ConfigError, match="objective"):
        build_surrogate("diffusion", tiny_geometry, {"objective": {"name": "score"}})
    with pytest.raises(ConfigError, match="no sampling options"):
        build_surrogate("wgan", tiny_geometry).configure_sampling(steps=4)
    with pytest.raises(ConfigError, match="sigma_min < sigma_max"):
        model.configure_sampling(sigma_max=0.001)


def test_sampling_starts_at_the_chosen_noise_level(tiny_geometry) -> None:
    """One Euler step from sigma_max decodes D(sigma_max * noise, sigma_max): the level chosen is used."""
    model = build_surrogate("diffusion", tiny_geometry, {"backbone": {"hidden": 8, "blocks": 1}}).eval()
    conditions = torch.full((4, 1), 1e4)
    noise = torch.randn(4, tiny_geometry.n_voxels)
    denoise = model.denoiser(model.conditions_map(conditions))
    found = {}
    for sigma_max in (20.0, 80.0):
        model.configure_sampling(sampler="euler", steps=1, sigma_max=sigma_max)
        with torch.no_grad():
            expected = model.coding.inverse(denoise(sigma_max * noise, torch.full((4,), sigma_max)), conditions)
            found[sigma_max] = model.showers_from_noise(conditions, noise)
        torch.testing.assert_close(found[sigma_max], expected)
    assert not torch.allclose(found[20.0], found[80.0])


@pytest.mark.parametrize("backbone", ["unet", "transformer"])
def test_conv_and_transformer_backbones_on_an_irregular_geometry(backbone) -> None:
    from calosurrogate.geometry import get_geometry
    from calosurrogate.models.diffusion.glam import GridBackbone

    geometry = get_geometry("ds1-photons")
    config = {"backbone": {"name": backbone, "unet_channels": (4, 8), "transformer_dim": 16, "transformer_depth": 1},
              "sampling": {"steps": 2}}  # fmt: skip
    model = build_surrogate("diffusion", geometry, config)
    assert isinstance(model.net, GridBackbone) == (backbone == "unet")
    torch.manual_seed(0)
    incident = torch.full((6, 1), 2.0**14)
    showers = torch.rand(6, geometry.n_voxels) * 50 * (torch.rand(6, geometry.n_voxels) < 0.4)
    model.fit_preprocessing(showers, incident)
    loss = model.loss(showers, incident)
    assert loss.shape == (6,) and torch.isfinite(loss).all()
    loss.mean().backward()
    if backbone == "unet":
        assert model.net.glam.forward_maps[0].grad is not None  # the maps are learned with the network
    assert model.sample(incident.numpy(), seed=0).shape == (6, geometry.n_voxels)


def test_progressive_distillation_halves_the_steps(tiny_geometry, tiny_file, tmp_path) -> None:
    """A student trained to do in 2 Euler steps what its teacher does in 4 lands closer to the
    teacher's 4-step samples than the teacher itself does in 2 steps (same noise)."""
    from calosurrogate.models import load_surrogate
    from calosurrogate.training import TrainConfig, train

    config = {"backbone": {"hidden": 32, "blocks": 2}, "sampling": {"sampler": "euler", "steps": 4}}
    settings = {"batch_size": 100, "device": "cpu", "seed": 1, "learning_rate": 3e-3}
    teacher = train(build_surrogate("diffusion", tiny_geometry, config), tiny_file, tmp_path / "teacher",
                    TrainConfig(epochs=10, **settings), progress=False)  # fmt: skip
    teacher = load_surrogate(teacher.model_path)
    student = teacher.distilled(2)
    assert (
        student.config.sampling.sampler == "euler"
        and student.config.sampling.steps == 2
        and student.teacher is not None
    )
    assert all(not name.startswith("teacher.") for p in student.optimizer_groups()["model"][0]
               for name, q in student.named_parameters() if q is p)  # fmt: skip
    result = train(student, tiny_file, tmp_path / "student", TrainConfig(epochs=8, **settings), progress=False)
    student = load_surrogate(result.model_path)
    assert torch.equal(student.coding.mean, teacher.coding.mean)  # preprocessing kept from the teacher

    conditions = torch.exp(torch.linspace(7.0, 11.0, 200)).reshape(-1, 1)
    torch.manual_seed(3)
    noise = torch.randn(200, tiny_geometry.n_voxels)
    with torch.no_grad():
        reference = teacher.coding(teacher.showers_from_noise(conditions, noise), conditions)
        teacher.configure_sampling(steps=2)
        coarse = teacher.coding(teacher.showers_from_noise(conditions, noise), conditions)
        distilled = student.coding(student.showers_from_noise(conditions, noise), conditions)
    error_teacher = float((coarse - reference).abs().mean())
    error_student = float((distilled - reference).abs().mean())
    assert error_student < 0.7 * error_teacher, (error_student, error_teacher)


def test_linear_attention_starts_as_identity_then_sees_the_whole_shower() -> None:
    torch.manual_seed(0)
    attention = LinearAttention3d(8, heads=2, head_dim=4)
    x = torch.randn(3, 8, 5, 4, 3)  # (N, C, layers, alpha, r)
    torch.testing.assert_close(attention(x), x)
    nn.init.normal_(attention.out.weight)
    y = attention(x)
    # Every cell sees every other: changing one far cell moves the output of the first cell...
    x_far = x.clone()
    x_far[:, :, -1, -1, -1] += 1.0
    assert not torch.allclose(attention(x_far)[:, :, 0, 0, 0], y[:, :, 0, 0, 0])
    # ...and the cells are a set: permuting them permutes the output the same way.
    perm = torch.randperm(5 * 4 * 3)
    permuted = x.flatten(2)[:, :, perm].unflatten(2, (5, 4, 3))
    torch.testing.assert_close(attention(permuted).flatten(2), y.flatten(2)[:, :, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.01, 0.5, 3.0])
def test_spike_slab_posterior_mean_matches_numerical_integration(sigma) -> None:
    """E[x0 | x] under p(x0) = p delta(x0 - spike) + (1 - p) N(m, w^2), by quadrature over x0."""
    from calosurrogate.models.diffusion.objectives import spike_slab_posterior_mean

    x = torch.linspace(-6, 4, 41, dtype=torch.float64)
    spike, logit, mean, raw_width = -4.0, 1.5, 0.3, 0.2
    prior = torch.tensor([logit, mean, raw_width]).expand(1, 41, 3)
    got = spike_slab_posterior_mean(x[None], torch.tensor([sigma]), torch.full((41,), spike), prior)[0].double()

    width, p_spike = math.log1p(math.exp(raw_width)) + 1e-3, 1 / (1 + math.exp(-logit))
    grid = torch.linspace(-15, 15, 200_001, dtype=torch.float64)
    slab = (1 - p_spike) * torch.exp(-0.5 * ((grid - mean) / width) ** 2) / (width * math.sqrt(2 * math.pi))
    likelihood = torch.exp(-0.5 * ((x[:, None] - grid) / sigma) ** 2)
    spike_likelihood = p_spike * torch.exp(-0.5 * ((x - spike) / sigma) ** 2)
    step = float(grid[1] - grid[0])
    expected = ((likelihood * slab * grid).sum(1) * step + spike_likelihood * spike) / (
        (likelihood * slab).sum(1) * step + spike_likelihood
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_spike_slab_snaps_empty_voxels_and_keeps_hits_at_low_noise() -> None:
    from calosurrogate.models.diffusion.objectives import spike_slab_posterior_mean

    prior = torch.tensor([0.0, 0.0, 0.55]).expand(1, 3, 3)
    x = torch.tensor([[-3.995, -3.0, 0.7]])  # within the noise of the spike, far from it, a hit
    out = spike_slab_posterior_mean(x, torch.tensor([0.01]), torch.full((3,), -4.0), prior)
    assert out[0, 0] == pytest.approx(-4.0, abs=1e-6)
    assert out[0, 1] == pytest.approx(-3.0, abs=1e-3)  # far from the spike at this noise: a (faint) hit
    assert out[0, 2] == pytest.approx(0.7, abs=1e-3)


@pytest.mark.parametrize("spike_slab", [False, True])
def test_spike_slab_reaches_the_optimal_denoiser_of_sparse_voxels(spike_slab) -> None:
    """Independent voxels, each empty (code -3) with its own probability, else N(0, 1): the best
    denoiser is the per-voxel spike-and-slab posterior mean. A narrow residual MLP stays well above
    that error; with the spike-and-slab output it reaches it."""
    from calosurrogate.models.diffusion.backbones import ResidualMLP, SpikeSlabMLP
    from calosurrogate.models.diffusion.objectives import spike_slab_posterior_mean

    torch.manual_seed(0)
    n_voxels, sigma, spike = 32, 0.7, torch.full((32,), -3.0)
    empty_probability = torch.linspace(0.05, 0.95, n_voxels)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = torch.where(torch.rand(n, n_voxels) < empty_probability, spike, torch.randn(n, n_voxels))
        return x0, x0 + sigma * torch.randn_like(x0)

    net = (SpikeSlabMLP if spike_slab else ResidualMLP)(n_voxels, 1, hidden=4, blocks=1)
    sigmas = torch.full((512,), sigma)

    def denoise(x: torch.Tensor) -> torch.Tensor:
        out = net(x, torch.zeros(len(x)), torch.zeros(len(x), 1))
        return spike_slab_posterior_mean(x, sigmas[: len(x)], spike, out) if spike_slab else out

    optimizer = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(300):
        x0, x = draw(512)
        loss = ((denoise(x) - x0) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x0, x = draw(512)
    with torch.no_grad():
        mse = ((denoise(x) - x0) ** 2).mean()
        logit = torch.logit(empty_probability).expand(512, -1)
        ideal = torch.stack([logit, torch.zeros_like(logit), torch.full_like(logit, math.log(math.e - 1))], -1)
        optimal = ((spike_slab_posterior_mean(x, sigmas, spike, ideal) - x0) ** 2).mean()
    if spike_slab:
        assert mse < 1.05 * optimal
    else:
        assert mse > 1.3 * optimal


def test_spike_slab_config_is_refused_where_it_does_not_apply(tiny_geometry) -> None:
    with pytest.raises(ConfigError, match="the spike-slab objective needs the mlp backbone, got 'unet'"):
        build_surrogate("diffusion", tiny_geometry, {"objective": {"name": "spike-slab"}, "backbone": {"name": "unet"}})
    with pytest.raises(ConfigError, match="the spike-slab objective needs the mlp backbone"):
        build_surrogate(
            "diffusion", tiny_geometry, {"objective": {"name": "spike-slab"}, "backbone": {"name": "transformer"}}
        )
    with pytest.raises(ConfigError, match="code_scale must be"):
        build_surrogate("diffusion", tiny_geometry, {"code_scale": "voxels"})


def _showers_with_empty_layers(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiny-geometry showers (12 voxels a layer) whose deep layers are empty in runs: layer 1
    in 30% of showers, layer 2 in 60% (always when layer 1 is), layer 0 in 20%."""
    incident = 1000.0 * 10 ** (2 * torch.rand(n, 1, generator=generator))
    u1, u2, u0 = torch.rand(3, n, generator=generator)
    occupied = torch.stack([u0 > 0.2, u1 > 0.3, (u1 > 0.3) & (u2 > 3 / 7)], dim=1)
    voxels = incident / 20 * torch.exp(0.5 * torch.randn(n, 36, generator=generator))
    return voxels * occupied.repeat_interleave(12, dim=1), torch.cat([incident, torch.zeros(n, 1)], dim=1)


@pytest.mark.parametrize("occupancy", [False, True])
def test_layer_occupancy_keeps_empty_layers_exactly_empty(occupancy, tiny_geometry) -> None:
    generator = torch.Generator().manual_seed(0)
    showers, conditions = _showers_with_empty_layers(4000, generator)
    torch.manual_seed(0)
    model = build_surrogate(
        "diffusion", tiny_geometry, {"first_stage": {"layer_energies": True, "occupancy": occupancy},
                                     "backbone": {"hidden": 16, "blocks": 1}},
        ("incident_energies", "incident_angles"),
    )  # fmt: skip
    model.fit_preprocessing(showers, conditions)
    stage = [p for name, p in model.named_parameters() if name.startswith("first_stage.")]
    optimizer = torch.optim.Adam(stage, lr=3e-3)
    for _ in range(400):  # the first stage alone: its loss does not touch the voxel network
        batch = torch.randint(0, 4000, (256,), generator=generator)
        noisy = dequantize(showers[batch], model.training_noise_mev(), generator)  # as the training loop does
        loss = model._energy_nll(noisy, conditions[batch]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        cond = model.conditions_map(conditions)
        uniform = torch.rand(4000, 3) if occupancy else None
        layer_e = model.first_stage.sample(cond, conditions[:, :1], torch.randn(4000, 3), uniform)
    empty = (layer_e == 0).float().mean(0)
    truth = torch.tensor([0.2, 0.3, 0.6])
    if occupancy:
        assert torch.allclose(empty, truth, atol=0.04)
        assert ((layer_e[:, 1] == 0) & (layer_e[:, 2] > 0)).float().mean() < 0.01  # layer 2 (almost) never alone
    else:  # a flow over the codes alone smears the point masses at u = 0 and 1
        assert (empty - truth).abs().max() > 0.15


def test_layer_occupancy_needs_the_layer_energy_stage(tiny_geometry) -> None:
    with pytest.raises(ConfigError, match="first_stage occupancy is part of the layer-energy stage"):
        build_surrogate("diffusion", tiny_geometry, {"first_stage": {"occupancy": True}})


def test_ancestral_sampling_never_holds_every_steps_noise_at_once(tiny_geometry, monkeypatch) -> None:
    config = {"backbone": {"hidden": 16, "blocks": 1}, "sampling": {"sampler": "ddpm", "steps": 8}}
    model = build_surrogate("diffusion", tiny_geometry, config)
    model.fit_preprocessing(torch.rand(64, 36) * 100, torch.full((64, 1), 1e4))
    assert model.sample_noise(torch.full((5, 1), 1e4))[-1].shape == (8, 5, 36)  # the exportable split keeps it
    drawn = []
    randn = torch.randn

    def recording_randn(*size, **kwargs):
        out = randn(*size, **kwargs)
        drawn.append(out.numel())
        return out

    monkeypatch.setattr(torch, "randn", recording_randn)
    monkeypatch.setattr(torch, "randn_like", lambda x, **kw: recording_randn(*x.shape, dtype=x.dtype, device=x.device))
    showers = model.sample(np.full((50, 1), 1e4, dtype=np.float32), batch_size=50)
    assert showers.shape == (50, 36) and np.isfinite(showers).all()
    assert len(drawn) >= 8 and max(drawn) <= 50 * 36  # one step's noise at a time


def test_sampled_showers_keep_the_first_stages_layer_energies_through_the_cut(tiny_geometry) -> None:
    generator = torch.Generator().manual_seed(1)
    showers, conditions = _showers_with_empty_layers(500, generator)
    torch.manual_seed(1)
    config = {"first_stage": {"layer_energies": True, "occupancy": True}, "backbone": {"hidden": 16, "blocks": 1},
              "sampling": {"steps": 4}}  # fmt: skip
    model = build_surrogate("diffusion", tiny_geometry, config, ("incident_energies", "incident_angles"))
    model.fit_preprocessing(showers, conditions)
    noise = model.sample_noise(conditions)
    with torch.no_grad():  # untrained: the voxel model's shapes are far from what the first stage wants
        layer_e = model.first_stage.sample(model.conditions_map(conditions), conditions[:, :1], *noise[1:])
        sampled = model.apply_cut(model.showers_from_noise(conditions, *noise))
    counted = model.first_stage.decomposition.layer_energies(sampled)
    visible = layer_e >= model.cut
    assert visible.any() and (layer_e > 0).float().mean() < 1
    assert torch.allclose(counted[visible], layer_e[visible], rtol=1e-5)
    assert (counted[~visible] == 0).all()


@pytest.mark.parametrize("library", [False, True])
def test_layers_the_voxel_model_leaves_empty_take_a_faint_training_layers_pattern(library, tiny_geometry, monkeypatch):
    generator = torch.Generator().manual_seed(2)
    showers, conditions = _showers_with_empty_layers(500, generator)
    showers[:, 24:36] *= torch.nn.functional.one_hot(torch.tensor(6), 12)  # layer 2: one hit, always voxel 30
    torch.manual_seed(2)
    config = {"first_stage": {"layer_energies": True, "occupancy": True, "library": library},
              "backbone": {"hidden": 16, "blocks": 1}, "sampling": {"steps": 4}}  # fmt: skip
    model = build_surrogate("diffusion", tiny_geometry, config, ("incident_energies", "incident_angles"))
    model.fit_preprocessing(showers, conditions)
    # A voxel model that says "empty" everywhere: every occupied layer is lost.
    monkeypatch.setattr(model.coding, "inverse", lambda codes, incident: torch.zeros_like(codes))
    noise = model.sample_noise(conditions)
    with torch.no_grad():
        layer_e = model.first_stage.sample(model.conditions_map(conditions), conditions[:, :1], *noise[1:3])
        sampled = model.showers_from_noise(conditions, *noise)
    faint = layer_e[:, 2] >= model.cut
    assert faint.sum() > 50
    assert torch.allclose(model.first_stage.decomposition.layer_energies(sampled)[faint], layer_e[faint], rtol=1e-5)
    at_voxel_30 = (sampled[faint, 30] == layer_e[faint, 2]).float().mean()
    if library:  # the only pattern layer 2 ever had in training
        assert at_voxel_30 == 1.0
        assert int(model.library.size[2]) == int((showers[:, 30] > 0).sum()) and (model.library.size[:2] == 0).all()
    else:  # one voxel, chosen by the voxel model's codes
        assert at_voxel_30 < 0.9


def test_layer_library_needs_the_layer_energy_stage(tiny_geometry) -> None:
    with pytest.raises(ConfigError, match="first_stage library is part of the layer-energy stage"):
        build_surrogate("diffusion", tiny_geometry, {"first_stage": {"library": True}})


@pytest.mark.parametrize("max_hits", [0, 1])
def test_library_max_hits_sends_the_voxel_models_faint_layers_to_the_library(max_hits, tiny_geometry, monkeypatch):
    generator = torch.Generator().manual_seed(3)
    showers, conditions = _showers_with_empty_layers(500, generator)
    showers[:, 24:36] *= torch.nn.functional.one_hot(torch.tensor(6), 12)  # layer 2: one hit, always voxel 30
    config = {"first_stage": {"layer_energies": True, "occupancy": True, "library": True, "library_max_hits": max_hits},
              "backbone": {"hidden": 16, "blocks": 1}, "sampling": {"steps": 4}}  # fmt: skip
    model = build_surrogate("diffusion", tiny_geometry, config, ("incident_energies", "incident_angles"))
    model.fit_preprocessing(showers, conditions)

    def one_hit_at_voxel_24(codes, incident):  # the voxel model's answer: layer 2 has one hit, at voxel 24
        out = torch.zeros_like(codes)
        out[:, [0, 12, 24]] = 1.0
        return out

    monkeypatch.setattr(model.coding, "inverse", one_hit_at_voxel_24)
    noise = model.sample_noise(conditions)
    with torch.no_grad():
        sampled = model.showers_from_noise(conditions, *noise)
    occupied = sampled[:, 24:36].sum(1) > 0
    assert occupied.sum() > 50
    hit = sampled[occupied, 24:36] > 0
    assert (hit.sum(1) == 1).all()
    assert hit[:, 6 if max_hits else 0].all()  # the library's voxel 30, or the model's own voxel 24


def test_library_max_hits_needs_the_library(tiny_geometry) -> None:
    with pytest.raises(ConfigError, match="library_max_hits chooses layers for the library"):
        build_surrogate("diffusion", tiny_geometry, {"first_stage": {"layer_energies": True, "library_max_hits": 2}})


def test_without_a_library_a_lost_layer_goes_to_its_core_voxel(tiny_geometry, monkeypatch) -> None:
    from calosurrogate.models.diffusion import samplers as diffusion_samplers

    generator = torch.Generator().manual_seed(4)
    showers, conditions = _showers_with_empty_layers(500, generator)
    showers[:, 24:36] *= torch.linspace(0.1, 2.0, 12)  # layer 2's largest hits: voxel 35
    config = {"first_stage": {"layer_energies": True, "occupancy": True}, "objective": {"name": "spike-slab"},
              "code_scale": "hits", "backbone": {"hidden": 16, "blocks": 1}, "sampling": {"steps": 4}}  # fmt: skip
    model = build_surrogate("diffusion", tiny_geometry, config, ("incident_energies", "incident_angles"))
    model.fit_preprocessing(showers, conditions)
    empty_code = -model.coding.mean / model.coding.std
    # A voxel model whose codes all land on the empty code: every occupied layer is lost, and the
    # rounding of code * std + mean alone would rank its voxels.
    monkeypatch.setattr(diffusion_samplers, "sample", lambda *args, **kwargs: empty_code.expand(500, -1).clone())
    with torch.no_grad():
        sampled = model.showers_from_noise(conditions, *model.sample_noise(conditions))
    occupied = sampled[:, 24:36].sum(1) > 0
    assert occupied.sum() > 50
    assert (sampled[occupied, 24:35] == 0).all() and (sampled[occupied, 35] > 0).all()


@pytest.mark.parametrize("sampler", ["ddpm", "analytic-ddpm", "dpm2m-sde"])
def test_a_compiled_denoiser_samples_the_same_showers(tiny_geometry, monkeypatch, sampler) -> None:
    """``sampling.compile`` (the denoiser and the stochastic samplers' update) changes the speed,
    not the showers; where compiling fails, sampling goes on eagerly with one warning."""
    from calosurrogate.models.diffusion import samplers

    model = build_surrogate("diffusion", tiny_geometry, {"backbone": {"hidden": 16, "blocks": 1},
                                                         "sampling": {"sampler": sampler, "steps": 4}})  # fmt: skip
    incident = torch.full((40, 1), 2.0**14)
    showers = torch.rand(40, 36) * 50 * (torch.rand(40, 36) < 0.5)
    model.fit_preprocessing(showers, incident)
    model.calibrate_sampling(showers, incident)
    eager = model.sample(incident.numpy(), batch_size=20, seed=1)
    model.configure_sampling(compile=True)
    assert model.config.sampling.compile and model.config.sampling.steps == 4
    model.prepare_sampling(incident[:20].numpy())
    assert model.config.sampling.steps == 4  # the one-step warm-up leaves the setting as it was
    np.testing.assert_allclose(model.sample(incident.numpy(), batch_size=20, seed=1), eager, rtol=1e-4, atol=1e-3)

    def broken(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(samplers, "_compile_failure", None)
    with pytest.warns(UserWarning, match="torch.compile failed, sampling eagerly .RuntimeError: no C.. compiler"):
        again = model.sample(incident.numpy(), batch_size=20, seed=1)
    np.testing.assert_allclose(again, eager, rtol=1e-6)


def test_training_measures_the_posterior_variance_the_analytic_sampler_needs(tiny_geometry, tiny_file, tmp_path):
    """The kept model comes out of training with its posterior-variance table measured on validation
    showers; analytic-ddpm then samples, and a model without a table (an older file) says so."""
    from calosurrogate.models import load_surrogate
    from calosurrogate.training import TrainConfig, train

    config = {"backbone": {"hidden": 32, "blocks": 2}, "sampling": {"sampler": "ddpm", "steps": 4}}
    result = train(build_surrogate("diffusion", tiny_geometry, config), tiny_file, tmp_path / "run",
                   TrainConfig(epochs=2, batch_size=100, device="cpu", seed=1), progress=False)  # fmt: skip
    model = load_surrogate(result.model_path)
    table = model.posterior_variance.table
    assert bool(model.posterior_variance.calibrated) and table.shape[1] == tiny_geometry.n_voxels
    assert bool((table >= 0).all()) and float(table[-1].mean()) > 100 * float(table[0].mean())  # grows with sigma
    incident = np.exp(np.linspace(np.log(1e3), np.log(1e5), 50))[:, None]
    model.configure_sampling(sampler="analytic-ddpm")
    showers = model.sample(incident, seed=0)
    assert showers.shape == (50, tiny_geometry.n_voxels) and np.isfinite(showers).all() and (showers >= 0).all()
    model.configure_sampling(sampler="ddpm")
    assert not np.array_equal(model.sample(incident, seed=0), showers)  # the same noise, a wider step

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("posterior_variance.")}
    older = build_surrogate("diffusion", tiny_geometry, config)
    older.load_state_dict(state)  # a file from before the table existed loads, uncalibrated
    older.configure_sampling(sampler="analytic-ddpm")
    with pytest.raises(ConfigError, match="analytic-ddpm sampler needs the posterior variance"):
        older.sample(incident, seed=0)
