"""ParaFlow's shower shapes on hand-made crystal images with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.metrics.crystal_shapes import crystal_shower_shapes, n_clusters


def _image(*deposits: tuple[int, int, float]) -> np.ndarray:
    image = np.zeros((8, 16))
    for ix, iy, energy in deposits:
        image[ix, iy] = energy
    return image


def test_one_crystal() -> None:
    s = crystal_shower_shapes(_image((4, 7, 1000.0))[None])
    assert s["brightest"][0] == 1000.0 and s["second_brightest"][0] == 0.0
    assert s["width"][0] == 0.0 and s["r9"][0] == 1.0 and s["n_clusters"][0] == 1


def test_width_r9_and_second_brightest_of_known_images() -> None:
    # two equal crystals two widths apart: barycentre half-way, every crystal 1 width from it
    two = _image((4, 5, 600.0), (4, 7, 600.0))
    # a bright crystal with a neighbour inside its 3 x 3 and one far outside
    spread = _image((2, 2, 800.0), (3, 3, 100.0), (2, 10, 100.0))
    s = crystal_shower_shapes(np.stack([two, spread]))
    assert s["width"][0] == pytest.approx(1.0)
    assert s["r9"][0] == pytest.approx(0.5)  # one of the two lies outside the 3 x 3
    assert s["r9"][1] == pytest.approx(0.9)
    assert s["second_brightest"][1] == 100.0
    # barycentre of spread: x = (1600 + 300 + 200) / 1000 = 2.1, y = (1600 + 300 + 1000) / 1000 = 2.9
    cx, cy = 2.1, 2.9
    expected = (
        800 * np.hypot(2 - cx, 2 - cy) + 100 * np.hypot(3 - cx, 3 - cy) + 100 * np.hypot(2 - cx, 10 - cy)
    ) / 1000
    assert s["width"][1] == pytest.approx(expected)


def test_r9_clips_the_3x3_at_the_image_edge() -> None:
    s = crystal_shower_shapes(_image((0, 0, 900.0), (1, 1, 50.0), (0, 2, 50.0))[None])
    assert s["r9"][0] == pytest.approx(0.95)


def test_clusters_join_diagonal_neighbours_and_split_over_a_gap() -> None:
    assert n_clusters(_image((3, 3, 500.0), (4, 4, 500.0))) == 1  # diagonal: sqrt(2) < 1.5
    assert n_clusters(_image((3, 3, 500.0), (3, 5, 500.0))) == 2  # one empty crystal between
    assert n_clusters(_image((3, 3, 500.0), (3, 4, 300.0), (3, 5, 500.0))) == 2  # the link is below 400 MeV
    assert n_clusters(_image((1, 1, 500.0), (1, 2, 500.0), (6, 14, 450.0))) == 2
    assert n_clusters(_image((1, 1, 100.0))) == 0
    assert crystal_shower_shapes(np.zeros((1, 8, 16)))["width"][0] == 0.0
