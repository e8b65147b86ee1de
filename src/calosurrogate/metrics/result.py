"""The value every metric returns: a number, its error, and the settings that produced it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricValue:
    """A metric's estimate.

    Attributes:
        name: What was measured.
        value: The estimate.
        error: Its uncertainty (standard error, bootstrap spread or run-to-run spread; the
            settings say which).
        settings: Everything needed to reproduce it.
    """

    name: str
    value: float
    error: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, for JSON."""
        return asdict(self)

    def scaled(self, factor: float, suffix: str = "") -> MetricValue:
        """The same estimate multiplied by ``factor`` (e.g. 1e3 for FPD/KPD as quoted)."""
        return MetricValue(self.name + suffix, self.value * factor, self.error * factor, dict(self.settings))
