from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.data import EnergySpectrum, parse_energy


def test_parse_energy_units() -> None:
    assert parse_energy("1GeV") == 1000.0
    assert parse_energy("1TeV") == 1e6
    assert parse_energy("512") == 512.0
    assert parse_energy("250 keV") == pytest.approx(0.25)
    for bad in ("1 parsec", "-3GeV", "GeV"):
        with pytest.raises(ValueError):
            parse_energy(bad)


def test_log_uniform_is_uniform_in_log(rng) -> None:
    spectrum = EnergySpectrum.parse("log-uniform:1GeV:1TeV")
    e = spectrum.sample(20000, rng)
    assert e.min() >= 1e3 and e.max() <= 1e6
    counts, _ = np.histogram(np.log10(e), bins=3, range=(3, 6))
    assert np.all(np.abs(counts / 20000 - 1 / 3) < 0.02)


def test_ds1_mix_follows_published_counts(rng) -> None:
    e = EnergySpectrum.parse("ds1").sample(121_000, rng)
    values, counts = np.unique(e, return_counts=True)
    np.testing.assert_allclose(values, 2.0 ** np.arange(8, 23))
    assert counts[0] == pytest.approx(10_000, rel=0.05)
    assert counts[-1] == pytest.approx(1000, rel=0.15)


def test_fixed_and_errors(rng) -> None:
    assert set(EnergySpectrum.parse("fixed:50GeV").sample(10, rng)) == {50_000.0}
    assert set(EnergySpectrum.parse("powers-of-two:8:9").sample(100, rng)) == {256.0, 512.0}
    with pytest.raises(ValueError, match="unknown energy spectrum"):
        EnergySpectrum.parse("gaussian:1:2")
    with pytest.raises(ValueError, match="HIGH must exceed LOW"):
        EnergySpectrum.parse("uniform:2GeV:1GeV")
