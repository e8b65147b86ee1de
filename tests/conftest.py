"""Shared fixtures: the official binning files when ../shared is present, small shower files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Property tests: a few hundred examples in CI; the fault-harness benchmark runs the larger profile.
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("harness", max_examples=3000, deadline=None)
settings.load_profile("ci")

OFFICIAL_BINNING = Path(__file__).resolve().parents[1] / ".." / "shared" / "calochallenge" / "binning"


@pytest.fixture
def official_binning_dir() -> Path:
    """Folder of the official CaloChallenge binning XML files; skips when it is absent."""
    if not OFFICIAL_BINNING.is_dir():
        pytest.skip("official binning files (../shared/calochallenge/binning) not present")
    return OFFICIAL_BINNING.resolve()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny_geometry():
    """A regular 3-layer, 4-alpha, 3-r binning (36 voxels) for fast model tests."""
    from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer

    edges = (0.0, 5.0, 12.0, 40.0)
    return CylindricalGeometry("tiny", "electron", tuple(CylindricalLayer(i, edges, 4) for i in range(3)))


@pytest.fixture(scope="session")
def tiny_file(tiny_geometry, tmp_path_factory):
    """2000 simulated showers in the tiny binning, 1-100 GeV, with an extra 'incident_angles' condition."""
    import dataclasses

    from calosurrogate.data import write_showers
    from calosurrogate.geometry import LayerStack
    from calosurrogate.simulate import ShowerSimulator, get_detector

    base = get_detector("ds2")
    detector = dataclasses.replace(
        base,
        name="tiny",
        geometry=tiny_geometry,
        stack=LayerStack.uniform(base.stack.material, 3, 4.0),
        profile_tables=None,  # they correct ds2's 45 layers
    )
    energies, showers = ShowerSimulator(detector).sample(2000, "log-uniform:1GeV:100GeV", seed=4)
    angles = np.random.default_rng(0).uniform(0.0, 0.3, (2000, 1))
    path = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    return write_showers(path, energies, showers, conditions={"incident_angles": angles})
