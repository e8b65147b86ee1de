"""CaloClouds: ShowerFlow follows its conditions, points are placed layer by layer, files round-trip."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from calosurrogate.data.points import ENERGY, LAYER, PointClouds
from calosurrogate.geometry import ild_ecal
from calosurrogate.models.caloclouds import CaloClouds, CaloCloudsConfig, ShowerFlow, load_caloclouds
from calosurrogate.models.caloclouds.family import PointVelocity, place_points
from calosurrogate.models.caloclouds.showerflow import _largest_remainder, layer_targets
from calosurrogate.simulate.points import PointShowerSimulator

TINY = CaloCloudsConfig(hidden=16, layers=2, time_features=4, flow_transforms=2, flow_hidden=16, flow_bins=4,
                        teacher_steps=2, calibration_bins=3)  # fmt: skip


def test_largest_remainder_keeps_totals_and_proportions() -> None:
    fractions = torch.tensor([[0.5, 0.3, 0.2], [0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]])
    counts = _largest_remainder(fractions, torch.tensor([10.0, 7.0, 100.0]))
    assert counts.sum(1).tolist() == [10, 7, 100]
    assert counts[0].tolist() == [5, 3, 2] and counts[1].tolist() == [0, 0, 7]
    assert counts[2].max() - counts[2].min() <= 1


def test_a_tiny_showerflow_follows_its_conditions() -> None:
    """Two layers; the condition c sets ln n_points = 3 + c, the first layer's share 0.2 + 0.6 c and
    the centre of gravity (c - 0.5, 0.1) mm with a spread of 0.3 (1 - c) mm in x."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 4000
    c = rng.uniform(0, 1, n)
    totals = np.round(np.exp(3 + c + 0.05 * rng.standard_normal(n)))
    first = np.round(totals * np.clip(0.2 + 0.6 * c + 0.02 * rng.standard_normal(n), 0, 1))
    n_points = np.column_stack([first, totals - first])
    energy = n_points * 0.2
    centre = np.column_stack([c - 0.5 + 0.3 * (1 - c) * rng.standard_normal(n), np.full(n, 0.1)])
    targets = torch.as_tensor(layer_targets(n_points, energy, centre), dtype=torch.float32)
    context = torch.as_tensor((c[:, None] - 0.5) / 0.29, dtype=torch.float32)
    flow = ShowerFlow(2, 1, transforms=2, hidden=32, bins=6, centre=True)
    flow.fit(targets.numpy())
    opt = torch.optim.Adam(flow.parameters(), 3e-3)
    for _ in range(300):
        idx = torch.randint(0, n, (256,))
        loss = flow.loss(targets[idx], context[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    spread = {}
    for value in (0.1, 0.9):
        budget = flow.sample(torch.full((2000, 1), (value - 0.5) / 0.29))
        total = budget.points.sum(1).float()
        assert total.log().mean().item() == pytest.approx(3 + value, abs=0.1)
        assert (budget.points[:, 0] / total).mean().item() == pytest.approx(0.2 + 0.6 * value, abs=0.05)
        assert budget.centre[:, 0].mean().item() == pytest.approx(value - 0.5, abs=0.05)
        spread[value] = budget.centre[:, 0].std().item()
        assert budget.centre[:, 1].mean().item() == pytest.approx(0.1, abs=0.02)
        # energy goes only where points are, and sums to the visible energy drawn
        assert torch.all(budget.energy[budget.points == 0] == 0)
    # the centre's spread follows the condition (0.27 and 0.03 mm; a short training leaves the narrow one wider)
    assert spread[0.1] == pytest.approx(0.27, rel=0.3) and spread[0.1] > 2.5 * spread[0.9]


def test_points_are_placed_by_their_depth_and_layers_get_their_energy() -> None:
    model = CaloClouds(TINY, ild_ecal())
    # two showers: 3 points (2 in layer 0, 1 in layer 5), 2 points (both in layer 29)
    points = torch.zeros(2, 30, dtype=torch.long)
    points[0, 0], points[0, 5], points[1, 29] = 2, 1, 2
    energy = torch.zeros(2, 30)
    energy[0, 0], energy[0, 5], energy[1, 29] = 4.0, 1.0, 6.0
    raw = torch.tensor([[0.0, 0.0, 9.0, 0.0], [0.1, 0.0, 1.0, 0.0], [0.2, 0.0, 2.0, 1.0],
                        [0.3, 0.0, 5.0, 0.0], [0.4, 0.0, 3.0, 0.0]])  # fmt: skip
    shower = torch.tensor([0, 0, 0, 1, 1])
    placed, offsets = place_points(raw, shower, points, energy, model.config.xy_scale_mm)
    clouds = PointClouds(np.ones(2), np.tile([0.0, 0, 1], (2, 1)), np.zeros((2, 2)), offsets.numpy(), placed.numpy())
    first = clouds.shower(0)
    # the deepest point (z = 9) goes to layer 5, the two shallow ones to layer 0
    assert first[:, LAYER].tolist() == [0, 0, 5]
    assert first[2, 0] == pytest.approx(5.0 * np.sinh(0.0))
    np.testing.assert_allclose(np.bincount(first[:, LAYER].astype(int), weights=first[:, ENERGY], minlength=6)[[0, 5]],
                               [4.0, 1.0], rtol=1e-6)  # fmt: skip
    # within layer 0 the energies keep their ratio e^0 : e^1
    assert first[1, ENERGY] / first[0, ENERGY] == pytest.approx(np.e, rel=1e-5)
    assert clouds.shower(1)[:, LAYER].tolist() == [29, 29]
    assert clouds.shower(1)[:, ENERGY].sum() == pytest.approx(6.0)


def test_each_shower_is_moved_onto_its_centre_of_gravity() -> None:
    """Two showers moved onto (1, -2) and (0, 3) mm: their energy-weighted centres land there and
    the points keep their distances to each other."""
    points = torch.zeros(2, 30, dtype=torch.long)
    points[0, 0], points[0, 5], points[1, 29] = 2, 1, 2
    energy = torch.zeros(2, 30)
    energy[0, 0], energy[0, 5], energy[1, 29] = 4.0, 1.0, 6.0
    raw = torch.tensor([[0.5, 0.1, 9.0, 0.0], [0.1, -0.3, 1.0, 0.0], [0.2, 0.0, 2.0, 1.0],
                        [-0.3, 0.2, 5.0, 0.0], [0.4, 0.0, 3.0, 2.0]])  # fmt: skip
    shower = torch.tensor([0, 0, 0, 1, 1])
    target = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    free, offsets = place_points(raw, shower, points, energy, 5.0)
    moved, same_offsets = place_points(raw, shower, points, energy, 5.0, target)
    assert torch.equal(offsets, same_offsets) and torch.equal(moved[:, 2:], free[:, 2:])
    for s, (lo, hi) in enumerate(itertools.pairwise(offsets.tolist())):
        part = moved[lo:hi]
        centre = (part[:, 3:4] * part[:, :2]).sum(0) / part[:, 3].sum()
        torch.testing.assert_close(centre, target[s], atol=1e-5, rtol=0)
        torch.testing.assert_close(part[:, :2] - part[:1, :2], free[lo:hi, :2] - free[lo : lo + 1, :2])
    assert not torch.allclose(free[:, :2], moved[:, :2])


def test_model_files_from_before_the_centre_of_gravity_still_load(tmp_path) -> None:
    geometry = ild_ecal()
    clouds = PointShowerSimulator(geometry).sample(20, "uniform:10GeV:30GeV", seed=0)
    model = CaloClouds(CaloCloudsConfig(**{**TINY.__dict__, "centre_of_gravity": False}), geometry)
    model.fit_preprocessing(clouds)
    assert model.layer_targets(clouds).shape == (20, 62)
    checkpoint = model.checkpoint_dict()
    del checkpoint["config"]["centre_of_gravity"]  # as written before the setting existed
    torch.save(checkpoint, tmp_path / "old.pt")
    back = load_caloclouds(tmp_path / "old.pt")
    assert back.config.centre_of_gravity is False
    conditions = clouds.incident_energies[:3], clouds.directions[:3], clouds.entry_points[:3]
    np.testing.assert_array_equal(back.sample(*conditions, seed=1).points, model.sample(*conditions, seed=1).points)


def test_sampling_saving_and_loading(tmp_path) -> None:
    torch.manual_seed(0)
    geometry = ild_ecal()
    clouds = PointShowerSimulator(geometry).sample(40, "uniform:10GeV:30GeV", seed=0)
    model = CaloClouds(TINY, geometry)
    model.fit_preprocessing(clouds)
    assert model.layer_targets(clouds).shape == (40, 64)  # counts, energies, shares, centre of gravity
    conditions = clouds.incident_energies[:5], clouds.directions[:5], clouds.entry_points[:5]
    teacher = model.sample(*conditions, seed=3)
    assert len(teacher) == 5 and np.all(np.isfinite(teacher.points))
    assert np.all(teacher.points[:, LAYER] >= 0) and np.all(teacher.points[:, LAYER] < 30)
    np.testing.assert_array_equal(model.sample(*conditions, seed=3).points, teacher.points)
    student = model.sample(*conditions, steps=0, seed=3)
    np.testing.assert_array_equal(student.offsets, teacher.offsets)  # ShowerFlow drew the same budget
    assert not np.allclose(student.points, teacher.points)
    path = model.save(tmp_path / "m.pt")
    back = load_caloclouds(path)
    np.testing.assert_array_equal(back.sample(*conditions, seed=3).points, teacher.points)
    torch.save({"family": "flow"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved caloclouds model"):
        load_caloclouds(tmp_path / "other.pt")


def test_the_point_network_sees_time_and_context() -> None:
    net = PointVelocity(5, 16, 2, 4)
    x, context = torch.randn(8, 4), torch.randn(8, 5)
    base = net(x, torch.zeros(8), context)
    assert base.shape == (8, 4)
    assert not torch.allclose(base, net(x, torch.ones(8), context))
    assert not torch.allclose(base, net(x, torch.zeros(8), context + 1))
