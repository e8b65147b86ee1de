"""Incident-energy spectra written as short specs, e.g. ``log-uniform:1GeV:1TeV``.

Forms (energies take a unit eV, keV, MeV, GeV or TeV; a bare number is MeV):

- ``log-uniform:LOW:HIGH``  uniform in log E (datasets 2 and 3)
- ``uniform:LOW:HIGH``      uniform in E
- ``fixed:E``               one energy
- ``discrete:E1,E2,...``    equally likely values
- ``powers-of-two:K1:K2``   2^K1 ... 2^K2 MeV, equally likely
- ``ds1``                   the dataset-1 mix: 2^8 ... 2^22 MeV with the published counts
                            (10k each up to 2^18, then 5000, 3000, 2000, 1000)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_UNITS = {"ev": 1e-6, "kev": 1e-3, "mev": 1.0, "gev": 1e3, "tev": 1e6}
DS1_ENERGIES_MEV = 2.0 ** np.arange(8, 23)
DS1_COUNTS = np.array([10_000] * 11 + [5000, 3000, 2000, 1000])


def parse_energy(text: str) -> float:
    """``"1GeV"`` -> 1000.0 (MeV). A bare number is MeV."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([a-zA-Z]*)\s*", text)
    if not m:
        raise ValueError(f"cannot read energy {text!r}: write e.g. 50GeV, 1TeV or 512 (MeV)")
    unit = m.group(2).lower() or "mev"
    if unit not in _UNITS:
        raise ValueError(f"unknown energy unit {m.group(2)!r} in {text!r}; use one of eV, keV, MeV, GeV, TeV")
    value = float(m.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"energy must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class EnergySpectrum:
    """A distribution of incident energies in MeV.

    Attributes:
        kind: ``log-uniform``, ``uniform`` or ``discrete``.
        low: Lower bound (continuous kinds), MeV.
        high: Upper bound (continuous kinds), MeV.
        values: Possible energies (discrete), MeV.
        weights: Their probabilities (discrete), summing to 1.
        spec: The text it was parsed from.
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    spec: str = ""

    @classmethod
    def parse(cls, spec: str) -> EnergySpectrum:
        """Read a spec string (see module docstring)."""
        head, _, rest = spec.strip().partition(":")
        head = head.lower()
        args = [a for a in rest.split(":")] if rest else []
        if head in ("log-uniform", "uniform"):
            if len(args) != 2:
                raise ValueError(f"{spec!r}: {head} needs LOW:HIGH")
            low, high = parse_energy(args[0]), parse_energy(args[1])
            if high <= low:
                raise ValueError(f"{spec!r}: HIGH must exceed LOW")
            return cls(head, low=low, high=high, spec=spec)
        if head == "fixed":
            value = parse_energy(rest)
            return cls("discrete", values=(value,), weights=(1.0,), spec=spec)
        if head == "discrete":
            values = tuple(parse_energy(v) for v in rest.split(","))
            return cls("discrete", values=values, weights=tuple([1.0 / len(values)] * len(values)), spec=spec)
        if head == "powers-of-two":
            k1, k2 = (int(a) for a in args)
            values = tuple(float(2.0**k) for k in range(k1, k2 + 1))
            return cls("discrete", values=values, weights=tuple([1.0 / len(values)] * len(values)), spec=spec)
        if head == "ds1":
            w = DS1_COUNTS / DS1_COUNTS.sum()
            return cls("discrete", values=tuple(DS1_ENERGIES_MEV), weights=tuple(w), spec=spec)
        raise ValueError(
            f"unknown energy spectrum {spec!r}: use log-uniform:LOW:HIGH, uniform:LOW:HIGH, fixed:E, "
            "discrete:E1,E2,..., powers-of-two:K1:K2 or ds1"
        )

    @property
    def bounds(self) -> tuple[float, float]:
        """Lowest and highest energy the spectrum gives, MeV."""
        if self.kind in ("log-uniform", "uniform"):
            return self.low, self.high
        return min(self.values), max(self.values)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` energies in MeV, shape ``(n,)``."""
        if self.kind == "log-uniform":
            return np.exp(rng.uniform(np.log(self.low), np.log(self.high), n))
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, n)
        return rng.choice(np.asarray(self.values), size=n, p=np.asarray(self.weights))
