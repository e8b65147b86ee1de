"""The one interface every surrogate family implements, and the registry that finds them.

A surrogate is built from a config dataclass plus what the data dictates (geometry, the
names of the conditions); it learns its preprocessing from training data (``fit_preprocessing``),
gives a per-shower training loss (``loss``), generates showers in MeV (``sample``), and saves
as one file holding the weights, the fitted preprocessing and the exact config that built it
(loadable with ``torch.load(weights_only=True)``), after nanoGPT's checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from calosurrogate._io import atomic_output
from calosurrogate.data.transforms import ConditionMap
from calosurrogate.devices import resolve_device, resolve_precision
from calosurrogate.geometry import CylindricalGeometry, default_min_energy, geometry_from_xml_string
from calosurrogate.memory import reused_memory

FORMAT_VERSION = 2
"""Version of saved model files. 2: the diffusion family rebuilt from parts (its options that lost
their ablation removed); files of version 1 load through :meth:`Surrogate.upgrade_config`."""
UpdateFn = Callable[[str, Tensor], None]
"""``update(group, loss)``: one optimiser step of parameter group ``group`` on scalar ``loss``."""
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Conditions mapped logarithmically (positive and scale-like): the incident energy, and ParaFlow's plate
LOG_MAPPED_CONDITIONS = frozenset({"incident_energies", "plate_thickness", "plate_distance"})


class ConfigError(ValueError):
    """A configuration names unknown keys or impossible values."""


class ExportNotSupportedError(NotImplementedError):
    """A family cannot express its sampling as a pure function of noise (so it cannot be exported)."""


class CheckpointError(ValueError):
    """A saved model does not fit what it is used with (or is not a calosurrogate model)."""


class ExtrapolationWarning(UserWarning):
    """A surrogate is asked for showers at conditions outside the range it was trained on."""


def config_from_dict(config_cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """Build a config dataclass from plain values (YAML, ``--set``, a checkpoint), checked key by key.

    Unknown keys are refused with the list of valid ones; each value must be of its field's
    type: an int where an int is declared (not 1.5, not "abc"), a number where a float is
    (an int or a numeric string such as YAML's ``1e-3`` is converted), a list where a tuple is,
    a mapping where a nested config is (built the same way, its keys named ``where.key``).

    Raises:
        ConfigError: One line naming ``where``, the key, the value and the expected type.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where} = {values!r}: expected a mapping of settings")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    try:
        hints = typing.get_type_hints(config_cls)
    except NameError:  # an annotation only a type checker can resolve: leave those values to the class
        hints = {}
    checked = {key: _checked_value(value, hints[key], f"{where}: {key}") if key in hints else value
               for key, value in values.items()}  # fmt: skip
    try:
        return config_cls(**checked)
    except (TypeError, ValueError) as err:  # the class's own checks (ConfigError among them) get the place
        raise ConfigError(f"{where}: {err}") from err


def merge_settings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``, nested mappings merged key by key (a nested config keeps
    the settings an override does not name)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _checked_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to ``hint`` where that loses nothing, else a ConfigError naming ``where``."""
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return config_from_dict(hint, value, where.replace(": ", "."))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _checked_value(value, option, where)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{where} = {value!r}: expected {_type_name(hint)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} = {value!r}: expected a list ({_type_name(hint)})")
        inner = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(inner) != len(value):
            raise ConfigError(f"{where} = {value!r}: expected {len(inner)} values ({_type_name(hint)})")
        return tuple(_checked_value(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, inner, strict=True)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r}: expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r}: expected an integer")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-3 (no dot) as a string
            except ValueError:
                pass
        raise ConfigError(f"{where} = {value!r}: expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} = {value!r}: expected a string")
    return value  # dicts and other structures: the class checks them


def autocast_context(device: torch.device, precision: str) -> Any:
    """Autocast for ``precision`` (fp32: none; ``"auto"``: see :func:`calosurrogate.devices.resolve_precision`).

    fp16 is refused on CPU, where it is slower and unsupported.
    """
    if precision == "auto":
        precision = resolve_precision(precision, device)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    if dtype is torch.float16 and device.type == "cpu":
        raise ConfigError("fp16 autocast needs a CUDA device; use bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


class Surrogate(nn.Module, ABC):
    """Base class of every surrogate family.

    Args:
        config: The family's config dataclass instance.
        geometry: The binning of the showers it learns.
        condition_names: Names of the condition columns; column 0 is always the incident
            energy (MeV), further columns come from extra datasets of the training file.
    """

    family: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    adversarial: ClassVar[bool] = False  # True: loss() is a critic's estimate, not a likelihood to minimise
    # Upper bound of the dequantisation noise (MeV): CaloFlow's 1 keV (arXiv:2106.05285). Noise as
    # wide as dataset 1's 1 MeV cut, summed over hundreds of voxels, would rival a 256 MeV shower's
    # own energy, and it would add 0.5 MeV on average to every hit a hurdle likelihood models.
    max_training_noise_mev: ClassVar[float] = 1e-3
    # Export formats refused, with the reason: where tracing would flatten a sampling loop of one
    # network pass per voxel into a graph the exporter takes hours over.
    refused_exports: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any, geometry: CylindricalGeometry, condition_names: tuple[str, ...]) -> None:
        super().__init__()
        if not condition_names or condition_names[0] != "incident_energies":
            raise ConfigError("the first condition must be incident_energies")
        self.config = config
        self.geometry = geometry
        self.condition_names = tuple(condition_names)
        self.register_buffer("_fitted", torch.tensor(False))
        # Sampling cut and dequantisation width: the config's energy_cut_mev, else the dataset's threshold.
        cut = getattr(config, "energy_cut_mev", None)
        self.register_buffer("cut", torch.tensor(float(cut if cut is not None else default_min_energy(geometry))))
        # (lowest, highest) value of each condition column in the training data, saved beside the
        # weights (not in them, so that models saved before it load); sampling warns outside it.
        self.condition_range: tuple[list[float], list[float]] | None = None

    @property
    def n_conditions(self) -> int:
        """Number of condition columns."""
        return len(self.condition_names)

    def new_condition_map(self) -> ConditionMap:
        """The map of the conditions to [-1, 1]: logarithmic for the positive, scale-like ones (the
        incident energy; the plate's thickness and distance, as ParaFlow maps them), linear else."""
        log_columns = tuple(i for i, name in enumerate(self.condition_names) if name in LOG_MAPPED_CONDITIONS)
        return ConditionMap(self.n_conditions, log_columns)

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------ family API
    @classmethod
    def upgrade_config(cls, config: dict[str, Any], format_version: int, source: str) -> dict[str, Any]:
        """The config of a model saved in file format ``format_version``, in today's form.

        Raises:
            CheckpointError: The model used something today's code no longer has (``source``
                names the file).
        """
        return config

    @abstractmethod
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        """Learn the preprocessing statistics from training showers ``(N, V)`` MeV and conditions ``(N, C)``."""

    @abstractmethod
    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Per-shower training loss ``(N,)`` (negative log-likelihood for flows)."""

    def calibrate_sampling(self, showers: Tensor, conditions: Tensor) -> None:
        """Measure, with the trained weights, what sampling needs from training showers ``(N, V)``
        MeV and conditions ``(N, C)`` (the training loop calls it before writing the model file).
        Nothing by default."""

    def sample_showers(self, conditions: Tensor) -> Tensor:
        """One batch of showers ``(N, V)`` in MeV for raw conditions ``(N, C)``."""
        return self.showers_from_noise(conditions, *self.sample_noise(conditions))

    def configure_sampling(self, **options: Any) -> None:
        """Set sampling-time options (a diffusion model's sampler and steps); none by default."""
        if options:
            raise ConfigError(f"model family {self.family!r} has no sampling options (got {sorted(options)})")

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        """Every random input of one sampling pass for raw conditions ``(N, C)``.

        With :meth:`showers_from_noise` this splits sampling into drawing noise and a
        deterministic network pass: the part that is exported (ONNX, TorchScript, torch.export)
        and checked against eager output on the same noise.
        """
        raise ExportNotSupportedError(f"model family {self.family!r} does not split sampling into noise and a pass")

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        """Showers ``(N, V)`` MeV from raw conditions and the tensors of :meth:`sample_noise` (deterministic)."""
        raise ExportNotSupportedError(f"model family {self.family!r} does not split sampling into noise and a pass")

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict[str, Any]]]:
        """Parameter groups that get their own optimiser, each with optimiser keyword overrides.

        Default: one group ``"model"`` holding every parameter. Adversarial families split
        generator and critic here.
        """
        return {"model": (list(self.parameters()), {})}

    def training_step(self, showers: Tensor, conditions: Tensor, update: UpdateFn) -> dict[str, Tensor]:
        """One optimisation step on a batch; returns scalars to log (``"loss"`` at least).

        The default minimises the mean of :meth:`loss`. A family overrides this only when its
        training is not one loss minimised by one optimiser (a GAN's critic and generator steps).
        """
        loss = self.loss(showers, conditions).mean()
        update("model", loss)
        return {"loss": loss.detach()}

    def training_noise_mev(self) -> float:
        """Width of the uniform dequantisation noise the training loop adds to voxels (MeV): the
        energy cut, capped by the family's ``max_training_noise_mev``."""
        return min(float(self.cut), self.max_training_noise_mev)

    def apply_cut(self, showers: Tensor) -> Tensor:
        """Showers in float32 with voxels below the energy cut set to 0 (the last step of every sampling
        path: :meth:`sample`, the timing harness, exported graphs). Compares with the buffer, not a
        Python float, so traced and exported graphs keep it."""
        showers = showers.float()
        return torch.where(showers < self.cut, torch.zeros_like(showers), showers)

    def energy_cut_mev(self) -> float:
        """Voxels below this are zeroed after sampling (MeV)."""
        return float(self.cut)

    # -------------------------------------------------------------------- sampling
    @torch.inference_mode()
    def sample(
        self,
        conditions: np.ndarray | Tensor,
        batch_size: int = 10_000,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        seed: int | None = None,
    ) -> np.ndarray:
        """Generate one shower per row of raw conditions ``(N, C)``; returns ``(N, V)`` MeV (float32)."""
        return np.concatenate([s for s in self.sample_batches(conditions, batch_size, device, precision, seed)])

    def prepare_sampling(
        self, conditions: np.ndarray | Tensor, device: str | torch.device | None = None, precision: str = "fp32"
    ) -> None:
        """Do once what the first batch of this size would (compile, where the model is set to):
        the time of a sampling pass then is what each further pass costs. Nothing by default."""

    @torch.inference_mode()
    def sample_batches(
        self,
        conditions: np.ndarray | Tensor,
        batch_size: int = 10_000,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        seed: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Like :meth:`sample`, yielding one ``(b, V)`` block per batch (bounded memory)."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if not bool(self._fitted):
            raise CheckpointError("the model's preprocessing is not fitted: train it (or load a trained one) first")
        cond = torch.as_tensor(np.asarray(conditions, dtype=np.float32)).reshape(len(conditions), -1)
        if cond.shape[1] != self.n_conditions:
            raise ConfigError(f"conditions have {cond.shape[1]} columns; the model needs {list(self.condition_names)}")
        device = resolve_device(device) if device is not None else self.device
        precision = resolve_precision(precision, device, min(batch_size, len(cond)))
        self.to(device).eval()
        if seed is not None:
            torch.manual_seed(seed)
        # the batches reuse each other's freed memory instead of having the kernel zero fresh pages
        block_bytes = 4 * min(batch_size, len(cond)) * self.geometry.n_voxels
        with autocast_context(device, precision), reused_memory(block_bytes):
            for lo in range(0, len(cond), batch_size):
                yield self.apply_cut(self.sample_showers(cond[lo : lo + batch_size].to(device))).cpu().numpy()

    # ---------------------------------------------------------------- persistence
    def checkpoint_dict(self) -> dict[str, Any]:
        """Weights, fitted preprocessing, the exact config and what the data dictated."""
        return {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "config": dataclasses.asdict(self.config),
            "geometry_name": self.geometry.name,
            "geometry_xml": self.geometry.to_xml_string(),
            "condition_names": list(self.condition_names),
            "condition_range": self.condition_range,
            "state_dict": self.state_dict(),
        }

    def save(self, path: str | os.PathLike[str], force: bool = True) -> Path:
        """Write the model file (atomically)."""
        with atomic_output(path, force=force) as tmp:
            torch.save(self.checkpoint_dict(), tmp)
        return Path(path)


REGISTRY: dict[str, type[Surrogate]] = {}


def register(name: str) -> Callable[[type[Surrogate]], type[Surrogate]]:
    """Class decorator: make a family available to ``calo train --model NAME``."""

    def decorate(cls: type[Surrogate]) -> type[Surrogate]:
        if name in REGISTRY:
            raise ValueError(f"model family {name!r} registered twice")
        cls.family = name
        REGISTRY[name] = cls
        return cls

    return decorate


def load_families() -> dict[str, type[Surrogate]]:
    """Import every family of :data:`calosurrogate.models.catalog.FAMILIES` (they register themselves)."""
    import importlib

    from calosurrogate.models.catalog import FAMILIES

    for family in FAMILIES.values():
        importlib.import_module(f"calosurrogate.models.{family.module}")
    return REGISTRY


def build_surrogate(
    name: str,
    geometry: CylindricalGeometry,
    overrides: dict[str, Any] | None = None,
    condition_names: tuple[str, ...] = ("incident_energies",),
) -> Surrogate:
    """Build a registered family with its default config updated by ``overrides``."""
    load_families()
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered: {sorted(REGISTRY)}")
    cls = REGISTRY[name]
    base = merge_settings(dataclasses.asdict(cls.config_class()), overrides or {})
    config = config_from_dict(cls.config_class, base, where=f"model {name!r} config")
    # Initial weights depend on the config's seed only, never on what ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(getattr(config, "seed", 0))
        return cls(config, geometry, tuple(condition_names))


def surrogate_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> Surrogate:
    """Rebuild a surrogate from :meth:`Surrogate.checkpoint_dict` output."""
    if not isinstance(checkpoint, dict) or "family" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{source}: not a calosurrogate model file")
    version = checkpoint.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{source}: format version {version}, expected 1 to {FORMAT_VERSION}")
    load_families()
    if checkpoint["family"] not in REGISTRY:
        raise CheckpointError(f"{source}: model family {checkpoint['family']!r} is not one of {sorted(REGISTRY)}")
    config = REGISTRY[checkpoint["family"]].upgrade_config(dict(checkpoint["config"]), version, source)
    geometry = geometry_from_xml_string(checkpoint["geometry_xml"], checkpoint["geometry_name"])
    model = build_surrogate(checkpoint["family"], geometry, config, tuple(checkpoint["condition_names"]))
    model.load_state_dict(checkpoint["state_dict"])
    if checkpoint.get("condition_range") is not None:
        low, high = checkpoint["condition_range"]
        model.condition_range = (list(low), list(high))
    return model


def load_surrogate(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Surrogate:
    """Load a saved model file (``torch.load(weights_only=True)``: no code runs from the file)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read as a calosurrogate model file ({err})") from err
    return surrogate_from_checkpoint(checkpoint, str(path))


def check_geometry(model: Surrogate, geometry: CylindricalGeometry, what: str) -> None:
    """Refuse to use a model with data of another binning."""
    if not model.geometry.same_binning(geometry):
        raise CheckpointError(
            f"{what} has geometry {geometry.name!r} ({geometry.n_voxels} voxels) but the model was trained on "
            f"{model.geometry.name!r} ({model.geometry.n_voxels} voxels)"
        )
