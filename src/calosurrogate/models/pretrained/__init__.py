"""Surrogates trained by the project and shipped inside the package, ready to sample.

Each is two files here: ``NAME.pt``, an ordinary model file (:func:`load_surrogate` reads it)
whose network weights are stored in bfloat16 to keep the package small (they are cast back to
float32 on loading; buffers such as the fitted preprocessing stay float32), and ``NAME.json``,
its provenance: the command, commit, data and seed that trained it and the quality measured for
it at the sampler its file is set to. ``benchmarks/ship_pretrained.py`` writes both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a model is: listing and describing stay torch-free (calo models)
    from calosurrogate.models.base import Surrogate

FOLDER = Path(__file__).resolve().parent

#: A shipped model file may be at most this large (the package stays light to install).
MAX_BYTES = 25 * 1024 * 1024


def available() -> list[str]:
    """Names of the shipped models (a model is shipped when both its files are here)."""
    return sorted(p.stem for p in FOLDER.glob("*.json") if p.with_suffix(".pt").exists())


def describe(name: str) -> dict[str, Any]:
    """The provenance of a shipped model: ``summary``, ``geometry``, ``sampling``, ``training``,
    ``data``, ``commands``, ``commit``, ``quality`` (what ``benchmarks/ship_pretrained.py`` recorded)."""
    return json.loads(_path(name, ".json").read_text())


def load_pretrained(name: str) -> Surrogate:
    """The shipped model ``name``, in float32, set to the sampler (and steps) it was judged with."""
    from calosurrogate.models.base import load_surrogate

    return load_surrogate(_path(name, ".pt"))


def compact_checkpoint(model: Surrogate) -> dict[str, Any]:
    """``model.checkpoint_dict()`` with its floating-point parameters in bfloat16.

    Only parameters: buffers hold fitted preprocessing (means, scales, library patterns) whose
    rounding would shift every shower, while a network's weights are what bf16 sampling rounds anyway.
    """
    import torch

    checkpoint = model.checkpoint_dict()
    parameters = {name for name, _ in model.named_parameters()}
    checkpoint["state_dict"] = {
        key: value.to(torch.bfloat16) if key in parameters and value.is_floating_point() else value
        for key, value in checkpoint["state_dict"].items()
    }
    return checkpoint


def _path(name: str, suffix: str) -> Path:
    path = FOLDER / f"{name}{suffix}"
    if not path.exists():
        from calosurrogate.models.base import CheckpointError

        shipped = ", ".join(available()) or "none"
        raise CheckpointError(f"no shipped model named {name!r} (shipped: {shipped})")
    return path
