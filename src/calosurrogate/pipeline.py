"""The end-to-end job behind ``calo quickstart``: data -> (train -> sample) -> judge -> report.

Each step writes its own file in the output folder and is skipped when that file is already
there (so an interrupted run picks up where it stopped); ``force`` redoes everything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from calosurrogate.data import inspect_file
from calosurrogate.simulate import get_detector, simulate_to_file


def _simulate_once(detector_name: str, n: int, path: Path, seed: int, force: bool, echo: Callable[[str], None]) -> Path:
    if path.exists() and not force:
        echo(f"reusing {path}")
        return path
    return simulate_to_file(get_detector(detector_name), n, path, seed=seed, force=force)


def run_quickstart(
    out_dir: str | Path,
    geometry_name: str = "ds2",
    n_train: int = 20_000,
    n_reference: int = 20_000,
    seed: int = 1,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Run the main job on simulated data; returns the paths it wrote (``report`` among them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = get_detector(geometry_name)
    train = _simulate_once(geometry_name, n_train, out / "train.h5", seed, force, echo)
    reference = _simulate_once(geometry_name, n_reference, out / "reference.h5", seed + 1000, force, echo)
    lines = [f"# calosurrogate quickstart ({geometry_name})", ""]
    for label, path in (("training", train), ("reference", reference)):
        summary = inspect_file(path, detector.geometry)
        lines += [f"## {label} file", "", "```", summary.to_text(), "```", ""]
        echo(summary.to_text())
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return {"train": train, "reference": reference, "report": report}
