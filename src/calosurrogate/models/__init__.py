"""Surrogate families behind one interface; importing this package registers them all."""

from calosurrogate.models import diffusion, flow, gan, inn, qvae, vae  # noqa: F401  (registration)
from calosurrogate.models.base import (
    REGISTRY,
    CheckpointError,
    ConfigError,
    Surrogate,
    build_surrogate,
    check_geometry,
    load_surrogate,
)

__all__ = [
    "REGISTRY",
    "CheckpointError",
    "ConfigError",
    "Surrogate",
    "build_surrogate",
    "check_geometry",
    "load_surrogate",
]
