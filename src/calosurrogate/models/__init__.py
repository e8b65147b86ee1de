"""Surrogate families behind one interface (:class:`Surrogate`), found by name in a registry.

Each family registers itself when its module is imported; the names below import them all on
first use, so that what needs no model (``calo --help``, ``calo models``: :mod:`.catalog`)
starts without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "REGISTRY",
    "CheckpointError",
    "ConfigError",
    "Surrogate",
    "build_surrogate",
    "check_geometry",
    "load_surrogate",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:  # a submodule (``from calosurrogate.models import flow``) is imported instead
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from calosurrogate.models import base

    base.load_families()
    return getattr(base, name)
