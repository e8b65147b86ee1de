"""Shared network pieces: cylindrical convolutions, log-energy coding, the hurdle likelihood."""

from __future__ import annotations

import math

import pytest
import torch
from zuko.transforms import MonotonicRQSTransform

from calosurrogate.layers import CylindricalConv3d
from calosurrogate.models.components import (
    HurdleLikelihood,
    LogEnergyCoding,
    SplineTransform,
    coupling_spline_flow,
    mlp,
)


def test_cylindrical_convolution_is_periodic_in_alpha() -> None:
    torch.manual_seed(0)
    conv = CylindricalConv3d(2, 3, 3)
    x = torch.randn(4, 2, 5, 8, 6)  # (N, C, layers, alpha, r)
    y = conv(x)
    assert y.shape == (4, 3, 5, 8, 6)
    # Rotating the shower in alpha rotates the output the same way (no edge in alpha)...
    torch.testing.assert_close(conv(torch.roll(x, 3, dims=3)), torch.roll(y, 3, dims=3))
    # ...while layer and radius have edges: shifting there does not commute.
    assert not torch.allclose(conv(torch.roll(x, 1, dims=4)), torch.roll(y, 1, dims=4))


def test_spline_transform_matches_zuko_and_inverts() -> None:
    torch.manual_seed(0)
    widths, heights, derivatives = torch.randn(64, 8), torch.randn(64, 8), torch.randn(64, 7)
    ours, theirs = SplineTransform(widths, heights, derivatives), MonotonicRQSTransform(widths, heights, derivatives)
    x = 6 * torch.randn(64)  # some beyond the bound (+-5), where both are the identity
    torch.testing.assert_close(ours(x), theirs(x))
    ladj = ours.log_abs_det_jacobian(x, ours(x))
    torch.testing.assert_close(ladj, theirs.log_abs_det_jacobian(x, theirs(x)), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.inv(ours(x)), theirs.inv(theirs(x)))
    torch.testing.assert_close(ours.inv(ours(x)), x, atol=1e-4, rtol=1e-4)
    # Extreme logits: the written-out softmax must not overflow where torch's would not.
    big = SplineTransform(1e4 * widths, heights, derivatives)
    assert torch.isfinite(big(x)).all()


@pytest.mark.parametrize(("features", "transforms"), [(368, 6), (45, 8), (7, 3)])
def test_coupling_flow_transforms_every_feature_equally_often(features, transforms) -> None:
    flow = coupling_spline_flow(features, 2, transforms, 8, 4, seed=1)
    masks = torch.stack([t.mask for t in flow.transform.transforms])  # True: conditions, not transformed
    transformed = (~masks).sum(0)
    assert transformed.min() >= transforms // 2
    assert transformed.max() <= (transforms + 1) // 2
    # Each transform still splines about half of the features.
    assert ((~masks).sum(1) - features / 2).abs().max() <= 1


def test_even_kernels_are_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        CylindricalConv3d(1, 1, (3, 2, 3))


@pytest.mark.parametrize("hits_only", [False, True])
def test_log_energy_coding_round_trip(hits_only) -> None:
    torch.manual_seed(0)
    incident = torch.tensor([[1e3], [5e4], [2e5]])
    showers = torch.rand(3, 10) * incident * 0.1
    showers[:, :3] = 0.0
    coding = LogEnergyCoding(10, cut_mev=0.01, hits_only=hits_only).fit(showers, incident)
    back = coding.inverse(coding(showers, incident), incident)
    hits = showers >= 0.01
    torch.testing.assert_close(back[hits], showers[hits], rtol=1e-4, atol=1e-6)
    if not hits_only:
        assert float(back[~hits].abs().max()) == 0.0  # empty voxels decode to exact zeros


def test_scale_on_hits_gives_hits_unit_spread_and_round_trips() -> None:
    """With scale_on_hits, each voxel's hit codes have mean 0 and spread 1 whatever the share of
    empty showers; without it, the empty/hit gap sets the spread."""
    torch.manual_seed(1)
    incident = torch.full((4000, 1), 1e4)
    showers = torch.exp(torch.randn(4000, 3) * 0.7) * 10.0  # hits of known spread in log energy
    showers[:2000, 1] = 0.0  # voxel 1 is empty in half the showers
    scaled = LogEnergyCoding(3, cut_mev=0.01, scale_on_hits=True).fit(showers, incident)
    plain = LogEnergyCoding(3, cut_mev=0.01).fit(showers, incident)
    codes = scaled(showers, incident)
    hits = codes[2000:, 1]
    assert float(hits.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(hits.std()) == pytest.approx(1.0, abs=1e-3)
    assert float(scaled.std[1]) == pytest.approx(0.7, rel=0.05)  # log1p is log here: E / (E_inc delta) >> 1
    assert float(plain.std[1]) > 3 * float(scaled.std[1])
    assert float(codes[:2000, 1].max()) < -5  # empty voxels sit far below the hits
    back = scaled.inverse(codes, incident)
    torch.testing.assert_close(back, showers, rtol=1e-4, atol=1e-6)


def test_all_voxel_coding_leaves_a_gap_between_empty_voxels_and_hits() -> None:
    incident = torch.tensor([[1e3], [1e5]])
    showers = torch.tensor([[0.0, 0.004, 0.01, 5.0], [0.0, 0.009, 0.01, 5.0]])
    coding = LogEnergyCoding(4, cut_mev=0.01).fit(showers, incident)
    raw = coding.raw(showers, incident)
    assert float(raw[:, :2].abs().max()) == 0.0  # below the cut: coded exactly as empty
    smallest_hit = raw[:, 2]
    # at the highest incident energy the cut sits at log(1 + GAP), higher at lower energies
    assert float(smallest_hit[1]) == pytest.approx(math.log1p(LogEnergyCoding.GAP), rel=1e-5)
    assert float(smallest_hit[0]) > float(smallest_hit[1])


def test_likelihood_families_dequantise_far_below_dataset_1_cut() -> None:
    from calosurrogate.geometry import get_geometry
    from calosurrogate.models import build_surrogate

    geometry = get_geometry("ds1-photons")
    families = ("flow", "inn", "diffusion", "vae", "qvae", "wgan")
    noise = {name: build_surrogate(name, geometry).training_noise_mev() for name in families}
    # a 256 MeV shower must not gain ~180 MeV of noise, nor a hurdle model's hits 0.5 MeV each
    assert {noise[name] for name in families[:-1]} == {1e-3}
    assert noise["wgan"] == 1.0  # the GAN keeps the cut's width


def test_hurdle_log_prob_matches_hand_computation() -> None:
    coding = LogEnergyCoding(2, cut_mev=1.0, hits_only=True)  # mean 0, std 1: codes are log(E / E_inc)
    likelihood = HurdleLikelihood(coding)
    params = torch.tensor([[[0.3, -1.0, math.log(0.5)], [-0.2, 0.0, 0.0]]])
    showers, incident = torch.tensor([[20.0, 0.0]]), torch.tensor([[100.0]])
    y = math.log(0.2)
    expected = (
        math.log(torch.sigmoid(torch.tensor(0.3)).item())
        - 0.5 * ((y + 1.0) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
        + math.log(1 - torch.sigmoid(torch.tensor(-0.2)).item())
    )  # fmt: skip
    assert likelihood.log_prob(params, showers, incident).item() == pytest.approx(expected, rel=1e-5)


def test_hurdle_samples_have_the_predicted_occupancy_and_respect_the_cut() -> None:
    torch.manual_seed(0)
    coding = LogEnergyCoding(1, cut_mev=1.0, hits_only=True)
    params = torch.tensor([[0.0, math.log(0.05), -1.0]]).expand(20_000, 1, 3)
    showers = HurdleLikelihood(coding).sample(params, torch.full((20_000, 1), 100.0))
    occupancy = float((showers > 0).float().mean())
    assert occupancy == pytest.approx(0.5, abs=0.02)
    assert float(showers[showers > 0].min()) >= 1.0


def test_mlp_without_final_bias() -> None:
    net = mlp(4, 1, 8, 2, final_bias=False)
    assert net[-1].bias is None and net[0].bias is not None


def test_glam_conserves_layer_energy_and_round_trips_at_initialisation() -> None:
    from calosurrogate.geometry import get_geometry
    from calosurrogate.models.diffusion.glam import GeometryLatentMap

    geometry = get_geometry("ds1-photons")
    glam = GeometryLatentMap(geometry)
    grid = glam.latent_geometry
    assert grid.is_regular and grid.n_layers == geometry.n_layers
    assert grid.layers[0].n_alpha == 10 and grid.layers[0].n_r == 30  # union of every layer's radial edges
    torch.manual_seed(0)
    voxels = torch.rand(7, geometry.n_voxels, dtype=torch.float64).float() * (torch.rand(7, geometry.n_voxels) < 0.5)
    cells = glam.encode(voxels)
    assert cells.shape == (7, grid.n_voxels)
    per_layer_voxels = torch.stack([voxels[:, geometry.layer_slice(i)].sum(1) for i in range(geometry.n_layers)], 1)
    per_layer_cells = cells.unflatten(1, (geometry.n_layers, -1)).sum(2)
    torch.testing.assert_close(per_layer_cells, per_layer_voxels, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(glam.decode(cells), voxels, rtol=1e-4, atol=1e-5)
    # A single voxel lands where it is: in a cell of the same layer whose area it overlaps.
    one = torch.zeros(1, geometry.n_voxels)
    one[0, geometry.layer_slice(1).start] = 1.0  # layer 1, first alpha bin, innermost ring
    hit = torch.nonzero(glam.encode(one)[0]).flatten()
    assert len(hit) >= 1 and all(grid.voxel_layer[i] == 1 and grid.voxel_r[i] == 0 for i in hit.tolist())


def test_autoregressive_bernoulli_is_normalised_autoregressive_and_samples_its_probabilities() -> None:
    import itertools

    from calosurrogate.models.components import AutoregressiveBernoulli

    torch.manual_seed(0)
    model = AutoregressiveBernoulli(3, 2, hidden=(16,))
    for p in model.parameters():  # random, far from uniform probabilities
        torch.nn.init.normal_(p, std=1.5)
    context = torch.tensor([[0.5, -1.0]])
    flags = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    with torch.no_grad():
        probs = model.log_prob(flags, context.expand(8, 2)).exp()
        assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
        # the logit of flag i does not move with flags >= i
        logits = model.logits(flags, context.expand(8, 2))
        for i in range(3):
            same_before = (flags[:, :i] == flags[0, :i]).all(1)
            assert torch.allclose(logits[same_before, i], logits[0, i])
        draws = model.sample_from_uniform(context.expand(40000, 2), torch.rand(40000, 3))
    codes = (draws * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()  # the row of `flags` each draw is
    frequencies = torch.bincount(codes, minlength=8).float() / 40000
    assert torch.allclose(frequencies, probs, atol=0.01)
