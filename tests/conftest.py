"""Shared fixtures: the official binning files when ../shared is present, small shower files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
