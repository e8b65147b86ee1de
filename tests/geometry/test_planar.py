"""The planar calorimeter's local frame: the photon's line at the origin of every layer, and back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calosurrogate.geometry import GeometryError, PlanarCalorimeter, ild_ecal
from calosurrogate.geometry.planar import angles_from_direction, direction_from_angles

ANGLE = st.floats(-np.radians(30), np.radians(30))
MM = st.floats(-150.0, 150.0)


def test_ild_ecal_stack() -> None:
    g = ild_ecal()
    assert g.n_layers == 30 and g.sub_cell_mm == pytest.approx(1.25)
    per_layer = np.diff(np.concatenate([[0.0], g.layer_x0]))
    # 20 thin plates of about 0.6 X0, then 10 of about 1.2 X0
    np.testing.assert_allclose(per_layer[:20], 0.605, atol=0.01)
    np.testing.assert_allclose(per_layer[20:], 1.204, atol=0.01)
    assert np.all(np.diff(g.layer_z) > 0)
    # thick layers see half the MIP sampling fraction of thin ones, roughly
    assert g.sampling_fractions[25] / g.sampling_fractions[5] == pytest.approx(0.51, abs=0.02)
    with pytest.raises(GeometryError, match="positive"):
        PlanarCalorimeter("bad", absorbers_mm=(2.0, -1.0))


@settings(max_examples=60, deadline=None)
@given(ANGLE, ANGLE, MM, MM, st.integers(0, 29), MM, MM)
def test_tilt_removal_inverts(theta_x, theta_y, x0, y0, layer, x, y) -> None:
    g = ild_ecal()
    direction = direction_from_angles(np.array([theta_x]), np.array([theta_y]))
    shifts = g.shifts(direction, np.array([[x0, y0]]))
    xy = np.array([[x, y]])
    local = g.to_local(xy, np.array([layer]), shifts)
    np.testing.assert_allclose(g.to_global(local, np.array([layer]), shifts), xy, rtol=0, atol=1e-9)
    # the photon's line is the local origin of every layer
    on_line = np.array([[x0, y0]]) + g.layer_z[layer] * direction[:, :2] / direction[:, 2:]
    np.testing.assert_allclose(g.to_local(on_line, np.array([layer]), shifts), 0.0, atol=1e-9)
    back = angles_from_direction(direction)
    np.testing.assert_allclose([back[0][0], back[1][0]], [theta_x, theta_y], atol=1e-12)


def test_normal_incidence_shifts_only_by_the_entry_point() -> None:
    g = ild_ecal()
    shifts = g.shifts(np.array([[0.0, 0.0, 1.0]]), np.array([[1.5, -2.0]]))
    np.testing.assert_array_equal(shifts[0], np.broadcast_to([1.5, -2.0], (30, 2)))
