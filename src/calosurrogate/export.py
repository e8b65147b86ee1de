"""Export a trained surrogate's sampling pass for use outside Python (C++ simulation frameworks).

What is exported is the deterministic part of sampling,
``showers = f(conditions, *noise)`` (:meth:`Surrogate.showers_from_noise`, cut included): the
host framework draws the noise (standard normals or uniforms of the shapes recorded beside the
file) and calls the graph. Formats:

- ``onnx`` (``torch.onnx.export`` with the dynamo exporter; checked with ONNX Runtime),
- ``torchscript`` (``torch.jit.trace``: what DD4hep's DDML / Gaudi integrations load through libtorch),
- ``pt2`` (``torch.export``: an ahead-of-time graph for AOTInductor).

Every export is checked against the eager model on the same noise and conditions; the check's
largest relative difference is returned, and an export that disagrees is refused. Families whose
noise comes from a Markov chain (the QVAE's prior sampler) export the graph after it: the prior
states are an input, drawn by the host (or a quantum annealer).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from calosurrogate._io import atomic_output, check_output_path
from calosurrogate.models.base import ExportNotSupportedError, Surrogate
from calosurrogate.models.caloclouds import CaloClouds
from calosurrogate.models.caloclouds.family import place_points

FORMATS = ("onnx", "torchscript", "pt2")
# Exports run in float32, and another runtime orders float32 sums and evaluates exp and log a little
# differently (~1e-7 relative per operation). A flow compounds that through its spline layers: on
# the default ds2 flow (untrained, ONNX Runtime) the layer energies agree to 5e-6 and the shower
# totals to 2e-6, but flow II's spread of a layer's energy over its voxels differs by up to 1.75e-3
# of the largest voxel (47 of 414,720 voxels crossed the cut). 5e-3 accepts that and still refuses
# a graph that computes something else.
DEFAULT_TOLERANCE = 5e-3
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts.pt", "pt2": ".pt2"}


class ExportError(RuntimeError):
    """An export failed or its output disagrees with the eager model."""


class _NoiseToShowers(nn.Module):
    """``forward(conditions, *noise) -> showers``: the exported function."""

    def __init__(self, model: Surrogate) -> None:
        super().__init__()
        self.model = model

    def forward(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        return self.model.apply_cut(self.model.showers_from_noise(conditions, *noise))


@dataclass
class ExportResult:
    """Where the export went and how well it agrees with eager execution."""

    path: Path
    format: str
    max_relative_difference: float
    input_names: list[str]
    input_shapes: list[list[int]]


def _example_inputs(model: Surrogate, n: int, seed: int) -> tuple[Tensor, ...]:
    generator = np.random.default_rng(seed)
    conditions = np.column_stack(
        [np.exp(generator.uniform(np.log(2e3), np.log(2e5), n))]
        + [generator.uniform(0, 0.3, n)] * (model.n_conditions - 1)
    )
    cond = torch.as_tensor(conditions, dtype=torch.float32)
    torch.manual_seed(seed)
    with torch.no_grad():
        noise = model.sample_noise(cond)
    return (cond, *noise)


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.abs(a).max()), 1e-30)
    return float(np.abs(a - b).max() / scale)


def export_surrogate(
    model: Surrogate,
    out: str | os.PathLike[str],
    fmt: str = "onnx",
    force: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    n_check: int = 64,
    seed: int = 0,
) -> ExportResult:
    """Export ``model``'s sampling pass to ``out`` in ``fmt`` and check it against eager output.

    Args:
        tolerance: Largest accepted difference between the exported graph and eager sampling,
            relative to the largest voxel energy (see :data:`DEFAULT_TOLERANCE`).

    Raises:
        ExportNotSupportedError: The family cannot separate its noise from its network pass, or
            refuses ``fmt`` (its ``refused_exports``).
        ExportError: The exporter failed, or the exported graph differs from eager by more
            than ``tolerance``; nothing is written then (an existing file stays).
        OutputExistsError: ``out`` exists and ``force`` is not set.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    if fmt in model.refused_exports:
        raise ExportNotSupportedError(f"{model.family}: no {fmt} export: {model.refused_exports[fmt]}")
    out = Path(out)
    check_output_path(out, force)
    model = model.to("cpu").eval()
    module = _NoiseToShowers(model).eval()
    inputs = _example_inputs(model, n_check, seed)
    other = _example_inputs(model, n_check // 2 + 3, seed + 1)  # another batch size: no baked-in shapes
    names = ["conditions"] + [f"noise_{i}" for i in range(len(inputs) - 1)]
    with torch.no_grad():
        expected = [module(*inputs).numpy(), module(*other).numpy()]
    # The graph is judged before it is published: a refused export leaves nothing (and an
    # existing file under --force untouched).
    with atomic_output(out, force=force) as tmp:
        try:
            exported = _EXPORTERS[fmt](module, inputs, names, Path(tmp))
            got = [exported(*inputs), exported(*other)]
        except (ExportNotSupportedError, ExportError):
            raise
        except Exception as err:
            raise ExportError(f"{model.family}: {fmt} export failed: {type(err).__name__}: {err}") from err
        if any(g.shape != e.shape for g, e in zip(got, expected, strict=True)):
            raise ExportError(f"{model.family}: the {fmt} graph does not follow the batch size; nothing was written")
        difference = max(_relative_difference(e, g) for e, g in zip(expected, got, strict=True))
        if difference > tolerance:
            raise ExportError(
                f"{model.family}: the {fmt} graph differs from eager sampling by {difference:.2e} (relative), "
                f"above the tolerance {tolerance:.0e} (--tolerance); nothing was written"
            )
    shapes = [[-1, *t.shape[1:]] for t in inputs]
    sidecar = out.with_name(out.name + ".json")
    with atomic_output(sidecar, force=True) as tmp:
        Path(tmp).write_text(
            json.dumps(
                {"family": model.family, "format": fmt, "inputs": dict(zip(names, shapes, strict=True)),
                 "condition_names": list(model.condition_names), "output": "showers (N, n_voxels) MeV",
                 "noise": "standard normal, except QVAE/VAE-hurdle: noise_1 uniform [0,1), and QVAE noise_0 binary "
                          "prior states", "max_relative_difference": difference,
                 "geometry": model.geometry.name},
                indent=2,
            )
        )  # fmt: skip
    return ExportResult(out, fmt, difference, names, shapes)


def _dynamic_batch(inputs: tuple[Tensor, ...]) -> tuple[object, ...]:
    """Dynamic first dimension for ``forward(conditions, *noise)``: the batch, or a multiple of
    it (per-layer noise of the per-layer flow has ``batch x layers`` rows)."""
    n = len(inputs[0])
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    noise = tuple({0: batch if len(t) == n else (len(t) // n) * batch} for t in inputs[1:])
    return ({0: batch}, noise)


def _export_onnx(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str], path: Path):
    try:
        import onnxruntime
    except ImportError as err:
        raise ExportError(
            "ONNX export needs: pip install 'calosurrogate[export]' (onnx, onnxscript, onnxruntime)"
        ) from err
    program = torch.onnx.export(
        module, inputs, input_names=names, output_names=["showers"], dynamo=True,
        dynamic_shapes=_dynamic_batch(inputs), external_data=False,
    )  # fmt: skip
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed_names = [i.name for i in session.get_inputs()]

    def run(*args: Tensor) -> np.ndarray:
        return session.run(None, {n: a.numpy() for n, a in zip(feed_names, args, strict=True)})[0]

    return run


def _export_torchscript(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str], path: Path):
    with torch.no_grad():
        traced = torch.jit.trace(module, inputs, check_trace=False)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))

    def run(*args: Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(*args).numpy()

    return run


def _export_pt2(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str], path: Path):
    program = torch.export.export(module, inputs, dynamic_shapes=_dynamic_batch(inputs))
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()

    def run(*args: Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(*args).numpy()

    return run


_EXPORTERS = {"onnx": _export_onnx, "torchscript": _export_torchscript, "pt2": _export_pt2}


# ------------------------------------------------------------------------- point clouds (CaloClouds)
class _Budget(nn.Module):
    """``(conditions (B, 4): E MeV, d_x, d_y, d_z; ShowerFlow noise (B, F)) -> (points per layer,
    energy per layer, centre of gravity (B, 2; zeros where the model draws none), uncalibrated points,
    standardised conditions)``: traced."""

    def __init__(self, model: CaloClouds) -> None:
        super().__init__()
        self.model = model

    def forward(self, conditions: Tensor, flow_noise: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        m = self.model
        raw = torch.cat([conditions[:, :1].log(), conditions[:, 1:]], 1)
        standard = (raw - m.condition_mean) / m.condition_std
        budget, n_context = m.budget(standard, conditions[:, 0], flow_noise)
        centre = budget.centre if budget.centre is not None else torch.zeros_like(conditions[:, :2])
        return budget.points, budget.energy, centre, n_context, standard


class _Student(nn.Module):
    """``(noise (P, 4), context (P, 5)) -> decoded codes (P, 4)``: the one-step student, traced."""

    def __init__(self, model: CaloClouds) -> None:
        super().__init__()
        self.model = model

    def forward(self, noise: Tensor, context: Tensor) -> Tensor:
        return self.model.point_codes(noise, context, steps=0)


class _PointCloudsFromNoise(nn.Module):
    """``forward(conditions (B, 4), flow_noise (B, F), point_noise (P_max, 4)) -> (points (P, 4), offsets (B + 1,))``:
    the whole one-step sampling of a CaloClouds model, its variable number of points included
    (scripted around the traced ShowerFlow and student)."""

    def __init__(self, budget: torch.jit.ScriptModule, student: torch.jit.ScriptModule, model: CaloClouds) -> None:
        super().__init__()
        self.budget = budget
        self.student = student
        self.register_buffer("count_mean", model.count_mean.clone())
        self.register_buffer("count_std", model.count_std.clone())
        self.xy_scale_mm = float(model.config.xy_scale_mm)
        self.centre_of_gravity = bool(model.config.centre_of_gravity)

    def forward(self, conditions: Tensor, flow_noise: Tensor, point_noise: Tensor) -> tuple[Tensor, Tensor]:
        points_per_layer, energy_per_layer, centre, n_context, standard = self.budget(conditions, flow_noise)
        counts = points_per_layer.sum(1)
        shower = torch.repeat_interleave(torch.arange(conditions.shape[0], device=conditions.device), counts)
        log_n = (n_context.float().clamp(min=1).log() - self.count_mean) / self.count_std
        context = torch.cat([standard, log_n[:, None]], -1)[shower]
        raw = self.student(point_noise[: shower.shape[0]], context)
        return place_points(raw, shower, points_per_layer, energy_per_layer, self.xy_scale_mm,
                            centre if self.centre_of_gravity else None)  # fmt: skip


def export_point_model(model: CaloClouds, out: str | os.PathLike[str], force: bool = False,
                       tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> ExportResult:  # fmt: skip
    """Export a distilled CaloClouds model's one-step sampling as one TorchScript file (what DD4hep's DDML
    loads through libtorch), checked against eager sampling on the same noise.

    The host draws standard normal noise: ``flow_noise`` ``(B, F)`` and ``point_noise`` with at least as
    many rows as the shower points (``P_max``; an upper bound such as 5,000 per 100 GeV of the batch's
    energy). Outputs are points in the local frame (x, y mm, layer, energy MeV) grouped by ``offsets``.
    """
    out = Path(out)
    check_output_path(out, force)
    if not bool(model.distilled):
        raise ExportNotSupportedError("caloclouds: only the distilled one-step student is exported; train it first")
    model = model.to("cpu").eval()
    rng = np.random.default_rng(seed)
    features = len(model.showerflow.mean)

    def example(n: int) -> tuple[Tensor, Tensor, Tensor]:
        theta = rng.uniform(-0.5, 0.5, (n, 2))
        d = np.column_stack([np.tan(theta), np.ones(n)])
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        conditions = np.column_stack([rng.uniform(*model.energy_range.tolist(), n), d])
        return (torch.as_tensor(conditions, dtype=torch.float32), torch.randn(n, features),
                torch.randn(n * 20_000, 4))  # fmt: skip

    first, second = example(8), example(3)
    with torch.no_grad():
        budget = torch.jit.trace(_Budget(model), first[:2], check_trace=False)
        student = torch.jit.trace(_Student(model), (torch.randn(64, 4), torch.randn(64, 5)), check_trace=False)
        eager = _PointCloudsFromNoise(_Budget(model), _Student(model), model)
        expected = [eager(*first), eager(*second)]
    names = ["conditions", "flow_noise", "point_noise"]
    with atomic_output(out, force=force) as tmp:
        try:
            scripted = torch.jit.script(_PointCloudsFromNoise(budget, student, model))
            scripted.save(str(tmp))
            loaded = torch.jit.load(str(tmp))
            with torch.no_grad():
                got = [loaded(*first), loaded(*second)]
        except Exception as err:
            raise ExportError(f"caloclouds: torchscript export failed: {type(err).__name__}: {err}") from err
        if any(not torch.equal(e[1], g[1]) for e, g in zip(expected, got, strict=True)):
            raise ExportError("caloclouds: the exported graph draws other point counts than eager sampling")
        difference = max(_relative_difference(e[0].numpy(), g[0].numpy()) for e, g in zip(expected, got, strict=True))
        if difference > tolerance:
            raise ExportError(f"caloclouds: the torchscript graph differs from eager sampling by {difference:.2e}")
    shapes = [[-1, 4], [-1, features], [-1, 4]]
    with atomic_output(out.with_name(out.name + ".json"), force=True) as tmp:
        Path(tmp).write_text(json.dumps({
            "family": model.family, "format": "torchscript", "inputs": dict(zip(names, shapes, strict=True)),
            "conditions": "incident energy (MeV), direction unit vector d_x, d_y, d_z", "noise": "standard normal",
            "output": "points (P, 4): x, y (mm, local frame), layer, energy (MeV); offsets (B + 1,)",
            "max_relative_difference": difference, "geometry": model.geometry.name}, indent=2))  # fmt: skip
    return ExportResult(out, "torchscript", difference, names, shapes)


__all__ = ["FORMATS", "SUFFIX", "ExportError", "ExportResult", "export_point_model", "export_surrogate"]
