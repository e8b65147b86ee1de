"""Reference floors computed once per reference file and kept beside it.

A floor (the metric between the reference's two halves) depends only on the reference and
the metric's settings, yet FPD, KPD and PRDC spend as long on it as on the value itself.
The cache is one JSON file beside the reference, ``.NAME.calo-floors.json``, whose entries
are keyed by the reference's SHA-256, the number of showers used, the threshold, the
metric's settings and the version of this package: never by the file's name, so a
reference rewritten in place (the pitfall of the CaloChallenge code's ``.pkl`` of features,
which it reuses whenever the name matches) misses the cache instead of reusing stale floors.

A cache that cannot be read is ignored (and rebuilt); one that cannot be written (a
read-only data folder) costs a warning, never the evaluation.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calosurrogate import __version__
from calosurrogate._io import atomic_output

FORMAT = 1


class FloorCache:
    """Floors of one reference file (identified by content), read and written beside it.

    Args:
        reference_path: The reference HDF5 file.
        reference_sha256: Its content hash (the caller has it already).
        context: What else the floors depend on besides each metric's settings (showers
            used, threshold).
    """

    def __init__(self, reference_path: Path, reference_sha256: str, context: dict[str, Any]) -> None:
        self.path = reference_path.parent / f".{reference_path.name}.calo-floors.json"
        self.base = {"reference_sha256": reference_sha256, "calosurrogate": __version__, **context}
        self.hits: list[str] = []

    def _key(self, metric: str, settings: dict[str, Any]) -> str:
        text = json.dumps({"metric": metric, "settings": settings, **self.base}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
            return {}
        return data["entries"]

    def get_or_compute(self, metric: str, settings: dict[str, Any], compute: Callable[[], Any]) -> Any:
        """The cached floor of ``metric`` under ``settings``, or ``compute()``'s (then stored).

        ``compute`` must return JSON-able data (plain dicts of numbers).
        """
        key = self._key(metric, settings)
        entry = self._entries().get(key)
        if isinstance(entry, dict) and "floor" in entry:
            self.hits.append(metric)
            return entry["floor"]
        floor = compute()
        entries = self._entries()  # re-read: another evaluation may have added its own since
        entries[key] = {"metric": metric, "settings": settings, **self.base, "floor": floor}
        try:
            with atomic_output(self.path, force=True) as tmp:
                Path(tmp).write_text(json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True))
        except OSError as err:
            warnings.warn(
                f"{self.path}: floor cache not written ({err.strerror or err}); floors are recomputed next time",
                stacklevel=2,
            )
        return floor
