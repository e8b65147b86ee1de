"""The ``calo`` command line: a thin layer over the Python API (nothing imports this module)."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from calosurrogate._io import OutputExistsError
from calosurrogate.data import ShowerFileError, inspect_file
from calosurrogate.geometry import GeometryError, get_geometry

DEFAULT_METRICS_TEXT = ("histograms", "fpd", "kpd", "cfd", "cls-high")
USER_ERRORS = (ShowerFileError, GeometryError, OutputExistsError, ValueError, FileNotFoundError, KeyError)


def _friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's own errors into one clear line instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            raise click.ClickException(str(err)) from err

    return wrapper


@click.group()
@click.version_option(package_name="calosurrogate")
def main() -> None:
    """calosurrogate: train, sample and judge fast calorimeter-shower surrogates."""


@main.command()
@click.option("--geometry", "geometry_name", default="ds2", show_default=True, help="Detector to simulate.")
@click.option("--n", "n_showers", type=int, required=True, help="Number of showers.")
@click.option(
    "--energy", default=None, help="Incident-energy spectrum, e.g. log-uniform:1GeV:1TeV (default: the dataset's)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output HDF5 file.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def simulate(
    geometry_name: str, n_showers: int, energy: str | None, seed: int, out: Path, dtype: str, force: bool, quiet: bool
) -> None:
    """Simulate showers with the built-in parametrized (GFlash-style, not Geant4) simulator."""
    from calosurrogate.simulate import get_detector, simulate_to_file

    detector = get_detector(geometry_name)
    simulate_to_file(detector, n_showers, out, energy, seed=seed, dtype=dtype, force=force, progress=not quiet)
    click.echo(f"wrote {n_showers} {geometry_name} showers to {out}")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--geometry", "geometry_name", default=None, help="Check against this geometry (name or XML).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_friendly_errors
def inspect(path: Path, geometry_name: str | None, as_json: bool) -> None:
    """Summarise a CaloChallenge HDF5 file: geometry match, counts, energies, sparsity, layers."""
    geometry = get_geometry(geometry_name) if geometry_name else None
    summary = inspect_file(path, geometry, progress=not as_json)
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.to_text())


@main.command("geometry")
@click.argument("name")
@click.option("--xml", "xml_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the binning XML here.")
@click.option("--force", is_flag=True, help="Overwrite an existing XML file.")
@_friendly_errors
def geometry_cmd(name: str, xml_out: Path | None, force: bool) -> None:
    """Describe a geometry (built-in name or XML), optionally writing its binning XML."""
    geometry = get_geometry(name)
    click.echo(f"{geometry.name}: {geometry.n_voxels} voxels in {geometry.n_layers} layers ({geometry.particle})")
    for layer in geometry.layers:
        click.echo(
            f"  layer {layer.layer_id:2d}: {layer.n_alpha:3d} alpha x {layer.n_r:3d} r, r up to {layer.r_edges[-1]} mm"
        )
    if xml_out is not None:
        geometry.to_xml(xml_out, force=force)
        click.echo(f"wrote {xml_out}")


@main.command()
@click.option(
    "--reference", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Reference HDF5 file."
)
@click.option(
    "--generated", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Generated HDF5 file."
)
@click.option("--geometry", "geometry_name", required=True, help="ds1-photons, ds1-pions, ds2, ds3 or a binning XML.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder."
)
@click.option(
    "--metrics", default="histograms,fpd,kpd,cfd,cls-high", show_default=True,
    help="Comma list of: histograms, fpd, kpd, cfd, cls-low, cls-low-normed, cls-high.",
)  # fmt: skip
@click.option(
    "--classifier", "classifier_preset", type=click.Choice(["cpu", "reference"]), default="cpu", show_default=True,
    help="cpu: hidden 256, 15 epochs, <= 50k showers per class; reference: hidden 2048, 50 epochs.",
)  # fmt: skip
@click.option("--classifier-runs", type=int, default=1, show_default=True, help="Independent classifier trainings.")
@click.option("--classifier-epochs", type=int, default=None, help="Override the preset's epochs.")
@click.option("--fast", is_flag=True, help="Reduced FPD/KPD sample sizes and classifier (quick look, not comparable).")
@click.option("--max-showers", type=int, default=None, help="Use at most this many showers of each file.")
@click.option("--on-count-mismatch", type=click.Choice(["subsample", "error"]), default="subsample", show_default=True)
@click.option("--min-energy", type=float, default=None, help="Threshold in MeV (default: the dataset's).")
@click.option("--device", default="cpu", show_default=True, help="Device of the classifier (cpu, cuda).")
@click.option("--force", is_flag=True, help="Replace an existing evaluation in --out.")
@_friendly_errors
def evaluate(
    reference: Path, generated: Path, geometry_name: str, out_dir: Path, metrics: str, classifier_preset: str,
    classifier_runs: int, classifier_epochs: int | None, fast: bool, max_showers: int | None, on_count_mismatch: str,
    min_energy: float | None, device: str, force: bool,
) -> None:  # fmt: skip
    """Judge generated showers against reference showers with the CaloChallenge metrics and CFD."""
    from calosurrogate.evaluation import EvaluationSettings, evaluate_files
    from calosurrogate.metrics import ClassifierSettings
    from calosurrogate.report import write_evaluation

    geometry = get_geometry(geometry_name)
    if (out_dir / "metrics.json").exists() and not force:
        raise OutputExistsError(f"{out_dir} already holds an evaluation; pass --force to replace it")
    base = EvaluationSettings.fast() if fast else EvaluationSettings()
    if not fast:
        base.classifier = ClassifierSettings.cpu() if classifier_preset == "cpu" else ClassifierSettings.reference()
    overrides: dict[str, object] = {"runs": classifier_runs, "device": device}
    if classifier_epochs is not None:
        overrides["epochs"] = classifier_epochs
    settings = dataclasses.replace(
        base,
        classifier=dataclasses.replace(base.classifier, **overrides),
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
        min_energy=min_energy,
        max_showers=max_showers,
        on_count_mismatch=on_count_mismatch,
    )
    result = evaluate_files(reference, generated, geometry, settings)
    files = write_evaluation(result, geometry, out_dir, force=force)
    click.echo((out_dir / "summary.md").read_text())
    click.echo(f"Report: {files['report.html']}")


@main.command()
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("quickstart"), show_default=True
)
@click.option("--geometry", "geometry_name", default="ds2", show_default=True)
@click.option("--n-train", type=int, default=20_000, show_default=True)
@click.option("--n-reference", type=int, default=20_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite outputs of an earlier run in --out.")
@_friendly_errors
def quickstart(out_dir: Path, geometry_name: str, n_train: int, n_reference: int, seed: int, force: bool) -> None:
    """The main job on the embedded default: simulate training and reference showers and summarise them."""
    from calosurrogate.pipeline import run_quickstart

    result = run_quickstart(out_dir, geometry_name, n_train, n_reference, seed, force=force, echo=click.echo)
    click.echo(f"\nDone. Report: {result['report']}")


if __name__ == "__main__":  # pragma: no cover
    main()
