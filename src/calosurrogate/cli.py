"""The ``calo`` command line: a thin layer over the Python API (nothing imports this module)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from calosurrogate._io import OutputExistsError, folder_lock, remove_partials_on_signal
from calosurrogate.data import ShowerFileError, inspect_file
from calosurrogate.geometry import GeometryError, get_geometry
from calosurrogate.geometry.planar import PLANAR_CALORIMETERS

WORKERS_HELP = ("Dask workers on this machine (a LocalCluster, one core each): more than 1 splits the work into "
                "shards, one HDF5 file each in OUT.shards/, and OUT reads them as one file (HDF5 virtual datasets); "
                "a rerun after a kill makes only the missing shards.")  # fmt: skip
SCHEDULER_HELP = ("Address of a running Dask scheduler (tcp://host:8786, e.g. started by dask-jobqueue on a batch "
                  "system): its workers make the shards. Needs pip install 'calosurrogate[dask]'.")  # fmt: skip
DEFAULT_METRICS_TEXT = ("histograms", "fpd", "kpd", "cfd", "cls-high")
USER_ERRORS = (ShowerFileError, GeometryError, OutputExistsError, ValueError, OSError, KeyError,
               NotImplementedError)  # fmt: skip
# ConfigError and CheckpointError are ValueErrors; FileNotFoundError, PermissionError and Geant4Unavailable OSErrors.


def _friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's own errors into one clear line instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            raise click.ClickException(str(err)) from err

    return wrapper


RUN_HELP = "Run folder, model file, or shipped:NAME (a model the package ships: calo models)."


@click.group()
@click.version_option(package_name="calosurrogate")
@click.pass_context
def main(ctx: click.Context) -> None:
    """calosurrogate: train, sample and judge fast calorimeter-shower surrogates."""
    # A SIGTERM or Ctrl-C during the command removes its unfinished outputs; once the command is
    # over, the former handlers come back.
    ctx.call_on_close(remove_partials_on_signal())
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr (``warning: ...``), not Python's file-and-line form."""
    click.echo(f"warning: {message}", err=True)


@main.command()
@click.option(
    "--geometry",
    "geometry_name",
    default="ds2",
    show_default=True,
    help="Detector to simulate: ds1-photons, ds2, ds3, paraflow or ild-ecal (photon showers as point clouds).",
)
@click.option("--n", "n_showers", type=click.IntRange(min=1), required=True, help="Number of showers.")
@click.option(
    "--energy", default=None, help="Incident-energy spectrum, e.g. log-uniform:1GeV:1TeV (default: the dataset's)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output HDF5 file.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option(
    "--engine", type=click.Choice(["fast", "geant4"]), default="fast", show_default=True,
    help="fast: the built-in parametrized simulator (GFlash-style; ds2/ds3 calibrated to Geant4). geant4: real Geant4 11.4 (pip install "
         "'calosurrogate[geant4]' and a C++ compiler; ds2, ds3, ds1-photons as planar Pb/LAr, paraflow's plate, field and crystals, and ild-ecal's SiW stack as point clouds) with a data-free EM physics list: no "
         "fluorescence, Auger or Rayleigh, relativistic bremsstrahlung also below 1 GeV (the official samples "
         "used Geant4's full standard physics).",
)  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help=WORKERS_HELP)
@click.option("--scheduler", default=None, metavar="ADDRESS", help=SCHEDULER_HELP)
@click.option("--shard-size", type=click.IntRange(min=1), default=None,
              help="Showers per shard (fast: a multiple of 256, default 10,240; geant4: of --chunk-size, default "
                   "ten chunks): write shards, on --workers (even 1) or --scheduler.")  # fmt: skip
@click.option("--chunk-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="geant4: showers per saved chunk (a killed run resumes from its chunks).")  # fmt: skip
@click.option("--condition", "conditions", multiple=True, metavar="NAME=VALUE|NAME=LOW:HIGH",
              help="paraflow: hold a plate condition at one value (plate_thickness in X0, plate_distance in cm) "
                   "or draw it uniformly from another range than 0.5-1.5 X0, 50-90 cm.")  # fmt: skip
@click.option("--hold-out", "held_out", multiple=True, metavar="NAME=LOW:HIGH[,NAME=LOW:HIGH]",
              help="paraflow: draw no photon in this region of the plate conditions (bounds that all hold; "
                   "an interpolation test's training file). Repeat for more regions.")  # fmt: skip
@click.option("--range-cut", "range_cut_mm", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="geant4: production cut in mm (nominal 0.7; a cheap simulation takes 10). The same --seed "
                   "gives the same primaries: a paired sample.")  # fmt: skip
@click.option("--cheap", is_flag=True, help="fast: the engine's cheap mode, half as many energy spots of twice the energy "
              "(a stand-in for an aggressive production cut; the same --seed gives a paired sample).")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def simulate(
    geometry_name: str, n_showers: int, energy: str | None, seed: int, out: Path, dtype: str, engine: str,
    workers: int, scheduler: str | None, shard_size: int | None, chunk_size: int, conditions: tuple[str, ...],
    held_out: tuple[str, ...], range_cut_mm: float | None, cheap: bool, force: bool, quiet: bool,
) -> None:  # fmt: skip
    """Simulate showers: the built-in fast engine (default) or real Geant4.

    --geometry paraflow: photons through an iron plate in a 4 T field onto PbWO4 crystals (ParaFlow's
    set-up), stored as the 8 x 16 crystal window with the plate's thickness and distance.

    --workers N or --scheduler ADDRESS: shards on Dask, identical row by row to the file one process writes.
    """
    from calosurrogate.simulate import get_detector, simulate_to_file
    from calosurrogate.simulate.detectors import cheap as cheap_mode

    if range_cut_mm is not None and (engine != "geant4" or geometry_name == "paraflow"):
        raise click.UsageError("--range-cut sets Geant4's production cut: it needs --engine geant4 and a sampling "
                               "calorimeter (the fast engine's cheap mode is --cheap)")  # fmt: skip
    if cheap and (engine != "fast" or geometry_name == "paraflow"):
        raise click.UsageError("--cheap is the fast engine's cheap mode for ds1-photons, ds2 and ds3; with Geant4 "
                               "take --range-cut 10")  # fmt: skip

    sharded = workers > 1 or scheduler is not None or shard_size is not None
    if geometry_name == "paraflow":
        from calosurrogate.simulate.paraflow import ParaFlowSetup, simulate_paraflow_to_file

        if sharded:
            raise click.UsageError("--workers/--scheduler: paraflow is simulated in one process (the geant4 engine's "
                                   "chunks resume a killed run)")  # fmt: skip

        fixed, ranges = {}, {}
        for item in conditions:
            name, value = _assignment(item, "--condition")
            if isinstance(value, tuple):
                ranges[name] = value
            else:
                fixed[name] = value
        regions = []
        for item in held_out:
            region = []
            for part in item.split(","):
                name, value = _assignment(part, "--hold-out")
                if not isinstance(value, tuple):
                    raise click.BadParameter(f"{part!r}: expected NAME=LOW:HIGH", param_hint="--hold-out")
                region.append((name, *value))
            regions.append(tuple(region))
        try:
            setup = dataclasses.replace(ParaFlowSetup().with_ranges(ranges), held_out=tuple(regions))
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--condition/--hold-out") from None
        if engine == "geant4":
            from calosurrogate.simulate.geant4.engine import simulate_paraflow_geant4_to_file

            simulate_paraflow_geant4_to_file(n_showers, out, energy, seed=seed, fixed=fixed, setup=setup,
                                             chunk_size=chunk_size, dtype=dtype, force=force,
                                             progress=not quiet)  # fmt: skip
        else:
            simulate_paraflow_to_file(n_showers, out, energy, seed=seed, fixed=fixed, setup=setup, dtype=dtype,
                                      force=force, progress=not quiet)  # fmt: skip
        click.echo(f"wrote {n_showers} paraflow showers ({engine} engine) to {out}")
        return
    if conditions or held_out:
        raise click.UsageError(f"--condition/--hold-out: {geometry_name} has no conditions to set (paraflow has)")
    if geometry_name in PLANAR_CALORIMETERS:
        if sharded or cheap or range_cut_mm is not None:
            raise click.UsageError(f"{geometry_name}: simulated in one process (no --workers, --scheduler, "
                                   "--shard-size, --cheap or --range-cut; the geant4 engine's chunks resume a killed run)")  # fmt: skip
        if engine == "geant4":
            from calosurrogate.simulate.geant4.engine import simulate_points_geant4_to_file

            simulate_points_geant4_to_file(PLANAR_CALORIMETERS[geometry_name](), n_showers, out, energy, seed=seed,
                                           chunk_size=chunk_size, force=force, progress=not quiet)  # fmt: skip
        else:
            from calosurrogate.simulate.points import simulate_points_to_file

            simulate_points_to_file(PLANAR_CALORIMETERS[geometry_name](), n_showers, out, energy, seed=seed,
                                    force=force, progress=not quiet)  # fmt: skip
        click.echo(f"wrote {n_showers} {geometry_name} photon showers as point clouds ({engine} engine) to {out}")
        return
    detector = get_detector(geometry_name)
    if cheap:
        detector = cheap_mode(detector)
    if sharded:
        from calosurrogate.simulate import simulate_sharded

        _, seconds = simulate_sharded(detector, n_showers, out, energy, seed, engine, shard_size, scheduler, workers,
                                      chunk_size, range_cut_mm, dtype, force, not quiet)  # fmt: skip
        click.echo(f"wrote {n_showers} {geometry_name} showers ({engine} engine) to {out} and its shards in "
                   f"{out}.shards/ ({seconds:.1f} s on Dask)")  # fmt: skip
        return
    if engine == "geant4":
        from calosurrogate.simulate.geant4.application import PRODUCTION_CUT_MM
        from calosurrogate.simulate.geant4.engine import simulate_geant4_to_file

        simulate_geant4_to_file(detector, n_showers, out, energy, seed=seed, chunk_size=chunk_size,
                                dtype=dtype, force=force, progress=not quiet,
                                range_cut_mm=range_cut_mm or PRODUCTION_CUT_MM)  # fmt: skip
    else:
        simulate_to_file(detector, n_showers, out, energy, seed=seed, dtype=dtype, force=force, progress=not quiet)
    click.echo(f"wrote {n_showers} {geometry_name} showers ({engine} engine) to {out}")


def _load_likelihood_run(run: Path, purpose: str):
    """A saved flow with an exact likelihood and the training range of its conditions."""
    model = _load_run(run)
    if not hasattr(model, "log_likelihood"):
        raise click.ClickException(f"{run}: model family {model.family!r} has no exact likelihood to {purpose} with "
                                   "(the paraflow and inn families have)")  # fmt: skip
    if model.condition_range is None:
        raise click.ClickException(f"{run}: the model carries no training range of its conditions")
    return model.eval()


def _default_spectrum(geometry_name: str) -> str:
    """The incident energies a geometry's simulator draws when none are given."""
    if geometry_name == "paraflow":
        from calosurrogate.simulate.paraflow import ParaFlowSetup

        return ParaFlowSetup().default_spectrum
    return "ds1" if geometry_name.startswith("ds1") else "log-uniform:1GeV:1TeV"


def _assignment(item: str, option: str) -> tuple[str, float | tuple[float, float]]:
    """``NAME=NUMBER`` or ``NAME=LOW:HIGH`` of an option."""
    name, _, value = item.partition("=")
    try:
        if ":" in value:
            low, high = value.split(":")
            return name.strip(), (float(low), float(high))
        return name.strip(), float(value)
    except ValueError:
        raise click.BadParameter(f"{item!r}: expected NAME=NUMBER or NAME=LOW:HIGH", param_hint=option) from None


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--geometry", "geometry_name", default=None,
              help="Check against this geometry (name or XML; default: the one built-in geometry of its voxel count).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_friendly_errors
def inspect(path: Path, geometry_name: str | None, as_json: bool) -> None:
    """Summarise a CaloChallenge HDF5 file: geometry match, counts, energies, sparsity, layers."""
    from calosurrogate.data.points import describe_point_clouds, inspect_point_clouds, is_point_cloud_file

    if is_point_cloud_file(path):
        summary = inspect_point_clouds(path)
        click.echo(json.dumps(summary, indent=2) if as_json else describe_point_clouds(summary))
        return
    geometry = _file_geometry(path, geometry_name, required=False)
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
@click.option(
    "--geometry",
    "geometry_name",
    required=True,
    help="ds1-photons, ds1-pions, ds2, ds3, a binning XML, paraflow or ild-ecal (point clouds).",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder."
)
@click.option(
    "--metrics", default="histograms,fpd,kpd,prdc,cfd,cls-high", show_default=True,
    help="Comma list of: histograms, fpd, kpd, prdc, cfd, cls-low, cls-low-normed, cls-high, cls-cnn (image CNN; ds2/ds3).",
)  # fmt: skip
@click.option(
    "--classifier", "classifier_preset", type=click.Choice(["cpu", "reference"]), default="cpu", show_default=True,
    help="cpu: hidden 256, 15 epochs, <= 50k showers per class; reference: hidden 2048, 50 epochs.",
)  # fmt: skip
@click.option("--classifier-runs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent classifier trainings.")  # fmt: skip
@click.option("--classifier-epochs", type=click.IntRange(min=1), default=None, help="Override the preset's epochs.")
@click.option(
    "--fast", is_flag=True, help="Reduced FPD/KPD/PRDC sample sizes and classifier (quick look, not comparable)."
)
@click.option("--no-floors", is_flag=True,
              help="Skip the reference-half floors (quicker; the verdict then has nothing to judge against).")  # fmt: skip
@click.option(
    "--max-showers", type=click.IntRange(min=1), default=None, help="Use at most this many showers of each file."
)
@click.option("--on-count-mismatch", type=click.Choice(["subsample", "error"]), default="subsample", show_default=True)
@click.option("--min-energy", type=float, default=None, help="Threshold in MeV (default: the dataset's).")
@click.option("--device", default="cpu", show_default=True, help="Device of the classifier (cpu, cuda).")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A weight file of the generated showers (calo reweight): judge the weighted sample.")  # fmt: skip
@click.option("--cell-size", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="ild-ecal: cell pitch in mm the points are projected onto (default: the detector's 5 mm).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing evaluation in --out.")
@_friendly_errors
def evaluate(
    reference: Path, generated: Path, geometry_name: str, out_dir: Path, metrics: str, classifier_preset: str,
    classifier_runs: int, classifier_epochs: int | None, fast: bool, no_floors: bool, max_showers: int | None,
    on_count_mismatch: str, min_energy: float | None, device: str, weights_path: Path | None, cell_size: float | None,
    force: bool,
) -> None:  # fmt: skip
    """Judge generated showers against reference showers with the CaloChallenge metrics and CFD.

    --geometry paraflow: ParaFlow's shower shapes instead (separation power inclusively and per
    slice of the plate's thickness and distance, beside its floor; the mean shapes over the grid of
    the two; the average image), written to OUT/metrics.json.

    --geometry ild-ecal: point-cloud showers projected onto the cells (--cell-size) and judged by
    CaloClouds' observables: Jensen-Shannon distances beside their floors, and the shower's direction.
    """
    from calosurrogate.evaluation import EvaluationSettings, evaluate_files
    from calosurrogate.metrics import ClassifierSettings
    from calosurrogate.report import check_evaluation_folder, write_evaluation

    check_evaluation_folder(out_dir, force)
    if geometry_name in PLANAR_CALORIMETERS:
        from calosurrogate.evaluation.points import evaluate_point_cloud_files
        from calosurrogate.report.points import write_point_report

        result = evaluate_point_cloud_files(str(reference), str(generated), cell_size, max_showers)
        write_point_report(result, str(reference), str(generated), out_dir, force)
        name, worst = result.worst
        click.echo(f"largest Jensen-Shannon distance: {name} {worst:.4f} (floor {result.jsd[name]['floor']:.4f})")
        click.echo(f"Report: {out_dir / 'report.html'}")
        return
    if geometry_name == "paraflow":
        from calosurrogate.evaluation.crystal import evaluate_crystal_files
        from calosurrogate.report.crystal import write_crystal_report

        with folder_lock(out_dir, "an evaluation"):
            check_evaluation_folder(out_dir, force)
            result = evaluate_crystal_files(reference, generated, n_max=max_showers)
            files = write_crystal_report(result, out_dir, force=force)
        inclusive = result["separation"]["all"]
        for shape, s in inclusive.items():
            click.echo(f"{shape:17s} separation power {s['value']:.2e} ± {s['error']:.1e} (floor {s['floor']:.2e}); "
                       f"mean over the (d, b) grid within {result['mean_shape_grid'][shape]['largest_relative_difference']:.1%} "
                       f"(floor {result['mean_shape_grid'][shape]['floor']:.1%})")  # fmt: skip
        image = result["average_image"]
        click.echo(f"central 4 x 4 crystals of the average image within {image['central_4x4_largest_relative_difference']:.1%} "
                   f"(floor {image['central_4x4_floor']:.1%})")  # fmt: skip
        click.echo(f"wrote {files['report.html']} (+ metrics.json, summary.md, plots)")
        return
    geometry = get_geometry(geometry_name)
    weights = None
    if weights_path is not None:
        from calosurrogate.data.weights import read_weights

        weights = read_weights(weights_path)
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
        floors=not no_floors,
    )
    with folder_lock(out_dir, "an evaluation"):  # before the long work: a busy or unwritable --out fails now
        check_evaluation_folder(out_dir, force)
        result = evaluate_files(reference, generated, geometry, settings, generated_weights=weights)
        files = write_evaluation(result, geometry, out_dir, force=force)
    click.echo((out_dir / "summary.md").read_text())
    click.echo(f"Report: {files['report.html']}")


def _parse_settings(config_path: Path | None, assignments: tuple[str, ...]) -> tuple[dict, dict]:
    """Model and train overrides from a YAML file (sections ``model:``, ``train:``) and ``--set`` pairs."""
    import yaml

    from calosurrogate.models.base import ConfigError

    model_cfg: dict = {}
    train_cfg: dict = {}
    if config_path is not None:
        try:
            loaded = yaml.safe_load(Path(config_path).read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{config_path}: not valid YAML ({' '.join(str(err).split())})") from err
        if not isinstance(loaded, dict) or not all(isinstance(v, dict | None) for v in loaded.values()):
            raise ConfigError(f"{config_path}: expected the sections 'model:' and 'train:', each of KEY: VALUE lines")
        unknown = set(loaded) - {"model", "train"}
        if unknown:
            raise ConfigError(f"{config_path}: unknown section(s) {sorted(unknown)}; use 'model:' and 'train:'")
        model_cfg.update(loaded.get("model") or {})
        train_cfg.update(loaded.get("train") or {})
    for item in assignments:
        key, sep, value = item.partition("=")
        section, *path = key.split(".")
        if not sep or not path or not all(path) or section not in ("model", "train"):
            raise ConfigError(f"--set {item!r}: write model.KEY=VALUE (model.PART.KEY=VALUE) or train.KEY=VALUE")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value  # not YAML: the string itself, which the config check then judges
        target = model_cfg if section == "model" else train_cfg
        for part in path[:-1]:  # model.backbone.hidden=256: the nested part's setting
            if not isinstance(target.setdefault(part, {}), dict):
                raise ConfigError(f"--set {item!r}: {part} is a setting, not a part with settings of its own")
            target = target[part]
        target[path[-1]] = parsed
    return model_cfg, train_cfg


@main.command()
@click.option("--model", "model_name", default="flow", show_default=True, help="Model family (see `calo models`).")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Training HDF5 file.")
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option(
    "--geometry", "geometry_name", default=None, help="Binning (default: the built-in one matching the file)."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML with model: and train: sections.",
)
@click.option("--set", "assignments", multiple=True, help="Override one setting: model.KEY=VALUE or train.KEY=VALUE.")
@click.option("--conditions", default="", help="Extra condition datasets of the file, comma separated.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint, with its saved settings and data.")  # fmt: skip
@click.option("--force", is_flag=True, help="Start afresh in an --out that holds a run.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes training side by side on this machine (torchrun; gloo on CPU, nccl with one GPU each). "
                   "train.batch_size is their batch together.")  # fmt: skip
@_friendly_errors
@click.pass_context
def train(
    ctx: click.Context, model_name: str, data: Path, run_dir: Path, geometry_name: str | None,
    config_path: Path | None, assignments: tuple[str, ...], conditions: str, resume: bool, force: bool, nproc: int,
) -> None:  # fmt: skip
    """Train a surrogate on a CaloChallenge file (checkpoint every epoch; --resume after a kill).

    Several processes or machines: --nproc N here, or torchrun itself, e.g.
    torchrun --nnodes 2 --nproc-per-node 4 ... -m calosurrogate train ...
    """
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        args = ["--model", model_name, "--data", str(data), "--out", str(run_dir), "--conditions", conditions]
        args += ["--geometry", geometry_name] if geometry_name else []
        args += ["--config", str(config_path)] if config_path else []
        args += [item for assignment in assignments for item in ("--set", assignment)]
        args += ["--resume"] * resume + ["--force"] * force
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        ctx.exit(subprocess.call([*launcher, "-m", "calosurrogate", "train", *args]))
    from calosurrogate.models import build_surrogate
    from calosurrogate.models.base import config_from_dict
    from calosurrogate.training import TrainConfig
    from calosurrogate.training import train as run_training

    if resume and force:
        raise click.UsageError("--resume continues a run and --force restarts it: give one of them")
    if model_name == "caloclouds":
        from calosurrogate.models.caloclouds import CaloCloudsConfig
        from calosurrogate.training.points import PointTrainConfig, train_caloclouds

        if nproc > 1 or conditions:
            raise click.UsageError("caloclouds trains in one process on a point-cloud file (no --nproc, --conditions)")
        model_cfg, train_cfg = _parse_settings(config_path, assignments)
        path = train_caloclouds(data, run_dir, config_from_dict(CaloCloudsConfig, model_cfg, "model config"),
                                config_from_dict(PointTrainConfig, train_cfg, "train config"), resume=resume,
                                force=force)  # fmt: skip
        click.echo(f"model: {path}")
        return
    model_cfg, train_cfg = _parse_settings(config_path, assignments)
    geometry = _file_geometry(data, geometry_name)
    names = ("incident_energies", *[c.strip() for c in conditions.split(",") if c.strip()])
    # On --resume the saved run decides; what the command line sets explicitly must agree with it.
    given = ctx.get_parameter_source("model_name") == click.core.ParameterSource.COMMANDLINE
    if resume and not given and model_cfg and (run_dir / "train_config.json").exists():
        model_name = json.loads((run_dir / "train_config.json").read_text()).get("family", model_name)
    model = build_surrogate(model_name, geometry, model_cfg, names) if not resume or given or model_cfg else None
    config = config_from_dict(TrainConfig, train_cfg, where="train config") if not resume or train_cfg else None
    result = run_training(model, data, run_dir, config, resume=resume, force=force)
    if not result.main_process:
        return
    click.echo(
        f"trained {result.epochs_done} epoch(s), stopped by {result.stopped_because}; best validation loss {result.best_val_loss:.4f}"
    )
    click.echo(f"model: {result.model_path}")


@main.command()
@click.option(
    "--run", "run_dir", type=click.Path(path_type=Path), required=True,
    help=RUN_HELP,
)  # fmt: skip
@click.option("--n", "n_showers", type=click.IntRange(min=1), default=None,
              help="Number of showers (default: all of --energies FILE).")  # fmt: skip
@click.option(
    "--energies", default=None, help="A reference HDF5 file (its energies and conditions) or a spectrum spec."
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output HDF5 file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16", "auto"]),
    default="fp32",
    show_default=True,
    help="auto: bf16 where the device runs it natively (CUDA, CPU with AMX), else fp32.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sampler", default=None,
              help="Diffusion models: euler, heun, rk4, dpm2m, ddpm, dpm2m-sde or analytic-ddpm.")  # fmt: skip
@click.option(
    "--steps",
    type=int,
    default=None,
    help="Diffusion models: number of noise levels. caloclouds: 0 the one-step student, k the teacher's k Heun steps.",
)
@click.option("--sigma-max", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Diffusion models: the highest noise level, where sampling starts (default: as the model is set).")  # fmt: skip
@click.option("--compile/--no-compile", "compile_denoiser", default=None,
              help="Diffusion models: run the denoiser through torch.compile (default: as the model is set).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help=WORKERS_HELP)
@click.option("--scheduler", default=None, metavar="ADDRESS", help=SCHEDULER_HELP)
@click.option("--shard-size", type=click.IntRange(min=1), default=None,
              help="Showers per shard (default 10,000): write shards, on --workers (even 1) or --scheduler.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@_friendly_errors
def sample(
    run_dir: Path, n_showers: int | None, energies: str | None, out: Path, batch_size: int, device: str,
    precision: str, seed: int, sampler: str | None, steps: int | None, sigma_max: float | None,
    compile_denoiser: bool | None, workers: int, scheduler: str | None, shard_size: int | None, force: bool,
) -> None:  # fmt: skip
    """Generate showers with a trained surrogate, in batches, into a CaloChallenge file.

    --workers N or --scheduler ADDRESS: shards on Dask, each with its own seed; the output depends
    on --seed and --shard-size, not on the number of workers.
    """
    from calosurrogate._io import check_output_path
    from calosurrogate.data import EnergySpectrum
    from calosurrogate.sampling import conditions_from_file, conditions_from_spectrum, sample_to_file

    check_output_path(out, force)  # before loading anything
    point_model = _point_model(run_dir)
    if point_model is not None:
        from calosurrogate.sampling.points import (
            point_conditions_from_file,
            point_conditions_from_spectrum,
            sample_points_to_file,
        )

        if energies is not None and Path(energies).exists():
            wanted = point_conditions_from_file(energies, n_showers)
        elif n_showers is None:
            raise click.ClickException("--n is needed unless --energies names a point-cloud file")
        else:
            wanted = point_conditions_from_spectrum(point_model, energies or "uniform:10GeV:90GeV", n_showers, seed)
        _, seconds = sample_points_to_file(point_model, wanted, out, min(batch_size, 1000), steps, seed, force,
                                           precision=precision)  # fmt: skip
        click.echo(f"wrote {len(wanted)} point-cloud showers to {out} ({1e3 * seconds / len(wanted):.3f} ms per "
                   "shower sampling)")  # fmt: skip
        return
    model = _load_run(run_dir)
    options = {
        k: v
        for k, v in (("sampler", sampler), ("steps", steps), ("sigma_max", sigma_max), ("compile", compile_denoiser))
        if v is not None
    }
    model.configure_sampling(**options)
    if energies is not None and Path(energies).exists():
        conditions = conditions_from_file(energies, model, n_showers)
    else:
        if energies is not None:
            try:
                EnergySpectrum.parse(energies)
            except ValueError as err:
                raise click.ClickException(
                    f"--energies {energies}: no such file, and not a spectrum either ({err})"
                ) from err
        if n_showers is None:
            raise click.ClickException("--n is needed unless --energies names a file")
        spec = energies or _default_spectrum(model.geometry.name)
        conditions = conditions_from_spectrum(spec, n_showers, model, seed)
    from calosurrogate.models.boltzmann_samplers import SamplerUnavailableError

    if workers > 1 or scheduler is not None or shard_size is not None:
        from calosurrogate.sampling import sample_sharded

        _, seconds, wall = sample_sharded(model, conditions, out, shard_size or 10_000, batch_size, device, precision,
                                          seed, scheduler=scheduler, workers=workers, force=force)  # fmt: skip
        click.echo(f"wrote {len(conditions)} showers to {out} and its shards in {out}.shards/ ({wall:.1f} s on Dask; "
                   f"{1e3 * seconds / len(conditions):.3f} ms per shower sampling, summed over the workers)")  # fmt: skip
        return
    try:
        _, seconds = sample_to_file(model, conditions, out, batch_size, device, precision, seed, force=force)
    except SamplerUnavailableError as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"wrote {len(conditions)} showers to {out} ({1e3 * seconds / len(conditions):.3f} ms per shower sampling)"
    )


@main.command()
def models() -> None:
    """List the surrogate families (--model NAME), one line each, then the models the package ships."""
    from calosurrogate.models.catalog import FAMILIES, POINT_FAMILIES
    from calosurrogate.models.pretrained import available, describe

    for name, family in sorted(FAMILIES.items()):
        click.echo(f"{name:10s} {family.summary} ({family.papers})")
    for name, family in sorted(POINT_FAMILIES.items()):
        click.echo(f"{name:10s} {family.summary} ({family.papers})")
    click.echo("\nShipped, trained models (calo sample --run shipped:NAME):")
    for name in available():
        about = describe(name)
        click.echo(
            f"{name:14s} {about['geometry']}: {about['summary']} ({about['training']['minutes']:g} min of training)"
        )


@main.command("geant4-fastsim")
@click.option(
    "--run", "run_dir", type=click.Path(path_type=Path), required=True,
    help="Trained surrogate (run folder or model.pt) of ds2 or ds3, conditioned on the incident energy.",
)  # fmt: skip
@click.option("--n", "n_events", type=click.IntRange(min=1), required=True, help="Events, each run in both modes.")
@click.option("--energy", default=None,
              help="Incident-energy spectrum, e.g. fixed:100GeV (default: the model's training range).")  # fmt: skip
@click.option("--threshold", "threshold_mev", type=float, default=None,
              help="The model takes e+-/gamma above this kinetic energy, MeV (default: its lowest training energy).")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of full.h5, fast.h5, fastsim.json and the evaluation.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Device of the surrogate.")
@click.option("--events-per-call", type=click.IntRange(min=1), default=1, show_default=True,
              help="The surrogate runs once per this many events (1: per event, as Geant4's Par04 example).")  # fmt: skip
@click.option("--metrics", default="histograms,fpd,kpd,cls-high", show_default=True,
              help="What `calo evaluate --fast` computes on fast.h5 against full.h5; 'none' skips it.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace existing outputs in --out.")
@_friendly_errors
def geant4_fastsim(
    run_dir: Path, n_events: int, energy: str | None, threshold_mev: float | None, out_dir: Path, seed: int,
    device: str, events_per_call: int, metrics: str, force: bool,
) -> None:  # fmt: skip
    """Run a surrogate inside Geant4 as its fast-simulation model: the same events in full and fast
    simulation, the time per event of each, and the fast output judged against the full one."""
    from calosurrogate._io import atomic_output, check_output_path
    from calosurrogate.sampling.geant4_fastsim import simulate_full_and_fast

    for name in ("full.h5", "fast.h5", "fastsim.json"):  # before the long work
        check_output_path(out_dir / name, force)
    model = _load_run(run_dir)
    run = simulate_full_and_fast(model, n_events, out_dir, energy, seed, threshold_mev, device,
                                 events_per_call=events_per_call, force=force)  # fmt: skip
    summary = run.as_dict()
    click.echo(
        f"{n_events} events: full simulation {summary['ms_per_event_full']:.1f} ms per event, fast simulation "
        f"{summary['ms_per_event_fast']:.2f} ms ({summary['ms_per_event_surrogate']:.2f} in the surrogate): "
        f"{run.speedup:.0f}x; the model took {run.taken} particles"
    )
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip() and m.strip() != "none")
    if chosen:
        from calosurrogate.evaluation import EvaluationSettings, evaluate_files
        from calosurrogate.report import write_evaluation

        settings = dataclasses.replace(EvaluationSettings.fast(), metrics=chosen)
        result = evaluate_files(run.full, run.fast, model.geometry, settings)
        files = write_evaluation(result, model.geometry, out_dir / "evaluation", force=force)
        summary["evaluation"] = str(files["metrics.json"])
        click.echo((out_dir / "evaluation" / "summary.md").read_text())
        click.echo(f"fast against full simulation: {files['report.html']}")
    with atomic_output(out_dir / "fastsim.json", force) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    click.echo(f"wrote {out_dir / 'fastsim.json'}")


@main.command()
@click.option("--nominal", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Showers of the nominal simulation (the target).")  # fmt: skip
@click.option("--modified", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Showers to weight: a cheap simulation or a surrogate's samples.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Weight file: one weight per modified shower, in its order.")  # fmt: skip
@click.option(
    "--geometry", "geometry_name", default=None, help="Binning (default: the built-in one matching the files)."
)
@click.option("--inputs", type=click.Choice(["high", "low", "cnn"]), default="high", show_default=True,
              help="Classifier inputs: high-level features, voxels, or voxels as images for the 3D CNN.")  # fmt: skip
@click.option("--classifier", type=click.Choice(["auto", "boosted", "network"]), default="auto", show_default=True,
              help="Gradient-boosted trees or a neural network (auto: trees on high-level inputs, the network "
                   "on voxels).")  # fmt: skip
@click.option(
    "--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Training epochs of the network."
)
@click.option("--folds", type=click.IntRange(min=2), default=2, show_default=True,
              help="Cross-fitting parts: each weight comes from a classifier trained without its shower.")  # fmt: skip
@click.option("--clip", type=click.FloatRange(min=1.0, min_open=True), default=20.0, show_default=True,
              help="Largest weight, in units of the mean weight.")  # fmt: skip
@click.option("--max-showers", type=click.IntRange(min=1), default=None, help="Use the first N showers of each file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing weight file.")
@_friendly_errors
def reweight(nominal: Path, modified: Path, out: Path, geometry_name: str | None, inputs: str, classifier: str,
             epochs: int, folds: int, clip: float, max_showers: int | None, seed: int, device: str, force: bool) -> None:  # fmt: skip
    """Weights that make the modified showers look nominal: a calibrated classifier's p / (1 - p),
    cross-fitted and clipped. Judge the weighted sample with calo evaluate --weights."""
    from calosurrogate._io import check_output_path
    from calosurrogate.correction import ReweightSettings, reweight_files
    from calosurrogate.data.weights import write_weights
    from calosurrogate.evaluation import file_sha256

    check_output_path(out, force)
    geometry = _file_geometry(modified, geometry_name)
    settings = ReweightSettings(inputs=inputs, classifier=classifier, epochs=epochs, folds=folds, clip=clip, seed=seed,
                                device=device)  # fmt: skip
    result = reweight_files(nominal, modified, geometry, settings, max_showers)
    attrs = {"nominal": str(nominal), "nominal_sha256": file_sha256(nominal), "modified": str(modified),
             "modified_sha256": file_sha256(modified), "geometry": geometry.name, **{
                 k: v for k, v in result.summary().items() if k != "settings"}, "settings": result.settings}  # fmt: skip
    write_weights(out, result.weights, attrs, fold=result.fold, force=force)
    summary = result.summary()
    click.echo(f"{summary['n_showers']} weights: effective sample size {summary['effective_sample_size']:,.0f} "
               f"({summary['effective_fraction']:.0%}), {summary['clipped_fraction']:.2%} clipped at {clip:g} x the "
               f"mean; classifier AUC before weighting {', '.join(f'{a:.3f}' for a in summary['classifier_auc'])} "
               f"(per part)")  # fmt: skip
    click.echo(f"wrote {out}")


@main.command()
@click.option("--modified", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Showers to refine (a cheap simulation, a surrogate's samples).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Refined HDF5 file.")
@click.option("--nominal", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Nominal showers to train on (omit with --model).")  # fmt: skip
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A trained refiner (refiner.pt) to apply instead of training one.")  # fmt: skip
@click.option("--save", "save_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to keep the trained refiner (default: beside --out, NAME.refiner.pt).")  # fmt: skip
@click.option("--mode", type=click.Choice(["paired", "unpaired"]), default="paired", show_default=True,
              help="paired: row i of both files shares its primary (same --seed); unpaired: distributions only.")  # fmt: skip
@click.option("--network", type=click.Choice(["dense", "conv"]), default="dense", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--max-showers", type=click.IntRange(min=1), default=None, help="Train on the first N showers of each.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_friendly_errors
def refine(modified: Path, out: Path, nominal: Path | None, model_path: Path | None, save_path: Path | None,
           mode: str, network: str, epochs: int, max_showers: int | None, seed: int, device: str,
           force: bool) -> None:  # fmt: skip
    """Refine showers toward the nominal simulation: train a refiner on --nominal and --modified
    (then refine --modified into --out), or apply a trained one (--model)."""
    from calosurrogate._io import check_output_path
    from calosurrogate.correction.refine import RefinerBundle, RefineSettings, refine_file, train_refiner
    from calosurrogate.data import read_showers

    if (nominal is None) == (model_path is None):
        raise click.UsageError("give --nominal to train a refiner, or --model to apply one (not both)")
    check_output_path(out, force)
    if model_path is not None:
        bundle = RefinerBundle.load(model_path)
    else:
        save_path = save_path or out.with_name(out.stem + ".refiner.pt")
        check_output_path(save_path, force)
        geometry = _file_geometry(modified, None)
        mod = read_showers(modified, geometry, negative="keep", max_showers=max_showers)
        nom = read_showers(nominal, geometry, negative="keep", max_showers=max_showers)
        settings = RefineSettings(mode=mode, network=network, epochs=epochs, seed=seed, device=device)
        bundle = train_refiner((mod.incident_energies, mod.showers), (nom.incident_energies, nom.showers), geometry,
                               settings, log=True)  # fmt: skip
        bundle.save(save_path, force=force)
        click.echo(f"wrote the refiner to {save_path}")
    path, seconds = refine_file(bundle, modified, out, force=force)
    click.echo(f"refined {modified} into {path} ({seconds * 1e3:.3f} ms per shower)")


def _file_geometry(path: Path, name: str | None, required: bool = True):
    """The geometry named, else the one built-in geometry with the file's voxel count (None where
    there is none or several and ``required`` is false)."""
    from calosurrogate.data import ShowerFile
    from calosurrogate.geometry import geometries_with_voxels

    if name is not None:
        return get_geometry(name)
    with ShowerFile(path) as f:
        n_voxels = f.n_voxels
    matches = geometries_with_voxels(n_voxels)
    if len(matches) == 1:
        return get_geometry(matches[0])
    if not required:
        return None
    found = f"it matches {', '.join(matches)}" if matches else "no built-in geometry has that many"
    raise click.ClickException(f"{path}: {n_voxels} voxels per shower, {found}; pass --geometry")


SHIPPED_PREFIX = "shipped:"


def _point_model(run: Path):
    """The CaloClouds model of a run folder or model file, or None if it holds another family."""
    import torch

    path = run / "model.pt" if run.is_dir() else run
    if str(run).startswith(SHIPPED_PREFIX) or not path.is_file():
        return None
    from calosurrogate.models.caloclouds.family import FAMILY, caloclouds_from_checkpoint

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and checkpoint.get("family") == FAMILY:
        return caloclouds_from_checkpoint(checkpoint, str(path))
    return None


def _load_run(run: Path):
    """A run folder, a model file, or ``shipped:NAME``: a model the package ships (``calo models``)."""
    from calosurrogate.models import load_surrogate

    if str(run).startswith(SHIPPED_PREFIX):
        from calosurrogate.models.pretrained import load_pretrained

        return load_pretrained(str(run).removeprefix(SHIPPED_PREFIX))
    return load_surrogate(run / "model.pt" if run.is_dir() else run)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from err


@main.command()
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help=RUN_HELP)
@click.option("--batch-sizes", default="1,100,10000", show_default=True, help="Comma-separated batch sizes.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option(
    "--precision", "precisions", default="fp32,bf16", show_default=True, help="Comma-separated: fp32, bf16, fp16."
)
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the sampling pass.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: torch's).")
@click.option("--min-seconds", type=float, default=2.0, show_default=True, help="Timed work per configuration.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder (default: RUN/bench)."
)
@click.option("--force", is_flag=True, help="Overwrite an earlier bench.json.")
@_friendly_errors
def bench(run: Path, batch_sizes: str, device: str, precisions: str, compile_model: bool, threads: int | None,
          min_seconds: float, out: Path | None, force: bool) -> None:  # fmt: skip
    """Time per shower of a trained surrogate by batch size, device and precision (JSON + plot)."""
    import torch

    from calosurrogate.benchmark import bench_to_dir

    if threads:
        torch.set_num_threads(threads)
    model = _load_run(run)
    folder = out or ((run if run.is_dir() else run.parent) / "bench")

    def show(r) -> None:
        click.echo(f"{r.device:5s} {r.precision:5s} batch {r.batch_size:6d}: {r.ms_per_shower:9.4f} ms/shower "
                   f"[{r.ms_per_shower_low:.4f}, {r.ms_per_shower_high:.4f}]  {r.showers_per_second:10.0f} showers/s"
                   + (f"  (compile failed: {r.compile_error})" if r.compile_error else ""))  # fmt: skip

    path, _ = bench_to_dir(model, folder, _int_list(batch_sizes), [p for p in precisions.split(",") if p], device,
                           compile_model, force=force, progress=show, min_seconds=min_seconds)  # fmt: skip
    click.echo(f"wrote {path} and {path.with_name('timing.png')}")


@main.command()
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help="The teacher. " + RUN_HELP)
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Training HDF5 file.")
@click.option(
    "--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Student run folder."
)
@click.option("--steps", type=click.IntRange(min=1), required=True,
              help="Student steps (the teacher is matched at twice as many).")  # fmt: skip
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML with a train: section.",
)
@click.option("--set", "assignments", multiple=True, help="Override one setting: train.KEY=VALUE.")
@click.option("--resume", is_flag=True, help="Continue the student run in --out from its last checkpoint.")
@click.option("--force", is_flag=True, help="Start afresh in an --out that holds a run.")
@_friendly_errors
def distill(run: Path, data: Path, run_dir: Path, steps: int, config_path: Path | None, assignments: tuple[str, ...],
            resume: bool, force: bool) -> None:  # fmt: skip
    """Progressive distillation of a diffusion model: a student with half the sampling steps."""
    from calosurrogate.models.base import config_from_dict
    from calosurrogate.training import TrainConfig
    from calosurrogate.training import train as run_training

    model_cfg, train_cfg = _parse_settings(config_path, assignments)
    if model_cfg:
        raise click.ClickException("distill takes train settings only; the student's model settings are the teacher's")
    teacher = _load_run(run)
    if not hasattr(teacher, "distilled"):
        raise click.ClickException(f"{run}: a {teacher.family!r} model cannot be distilled (diffusion models only)")
    config = config_from_dict(TrainConfig, train_cfg, where="train config") if not resume or train_cfg else None
    result = run_training(teacher.distilled(steps), data, run_dir, config, resume=resume, force=force)
    click.echo(f"distilled to {steps} step(s) in {result.epochs_done} epoch(s); student: {result.model_path}")


@main.command()
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help=RUN_HELP)
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="HDF5 showers to measure on: its last --showers (a training file's validation showers).")  # fmt: skip
@click.option("--showers", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Model file to write (default: the run's own model file, which needs --force).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@_friendly_errors
def calibrate(run: Path, data: Path, showers: int, out: Path | None, force: bool) -> None:
    """Measure what a trained model's sampler needs from data (a diffusion model's posterior variance
    for --sampler analytic-ddpm); training does it itself, so this is for older models."""
    from calosurrogate.training import calibrate as measure

    if str(run).startswith(SHIPPED_PREFIX) and out is None:
        raise click.ClickException("a shipped model is calibrated into a file of your own: give --out")
    out = out if out is not None else (run / "model.pt" if run.is_dir() else run)
    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; add --force to replace it (the weights stay as they are)")
    model = measure(_load_run(run), data, showers)
    model.save(out, force=True)
    click.echo(f"calibrated on the last showers of {data} (at most {showers}, at most 500 MB of voxels); wrote {out}")


@main.command("export")
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help=RUN_HELP)
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "pt2"]), default="onnx", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Output file (default: in RUN)."
)
@click.option("--tolerance", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Largest accepted difference to eager sampling, relative to the largest voxel [default: 5e-3].")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite an existing export.")
@_friendly_errors
def export_cmd(run: Path, fmt: str, out: Path | None, tolerance: float | None, force: bool) -> None:
    """Export the sampling pass (conditions + noise -> showers), checked against eager output."""
    from calosurrogate.export import DEFAULT_TOLERANCE, SUFFIX, ExportError, export_point_model, export_surrogate

    point_model = _point_model(run)
    target = out or ((run if run.is_dir() else run.parent) / f"model{SUFFIX[fmt]}")
    try:
        if point_model is not None:
            if fmt != "torchscript":
                raise click.UsageError("caloclouds exports to torchscript (what DD4hep's DDML loads)")
            result = export_point_model(point_model, target, force=force, tolerance=tolerance or DEFAULT_TOLERANCE)
        else:
            result = export_surrogate(_load_run(run), target, fmt, force=force,
                                      tolerance=tolerance or DEFAULT_TOLERANCE)  # fmt: skip
    except ExportError as err:
        raise click.ClickException(str(err)) from err
    inputs = dict(zip(result.input_names, result.input_shapes, strict=True))
    click.echo(f"wrote {result.path} (+ .json with the inputs); largest relative difference to eager sampling "
               f"{result.max_relative_difference:.1e}; inputs {inputs}")  # fmt: skip


@main.command()
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help=RUN_HELP)
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Showers whose conditions to infer (their incident energies known per shower).")  # fmt: skip
@click.option("--free", default="plate_thickness,plate_distance", show_default=True,
              help="Conditions to fit, shared by each sample, comma separated.")  # fmt: skip
@click.option("--sample-size", type=click.IntRange(min=1), default=None,
              help="Cut the file into samples of this many showers and fit each; where the file holds the "
                   "free conditions (fixed per sample), report bias, resolution and 68%% coverage.")  # fmt: skip
@click.option("--max-showers", type=click.IntRange(min=1), default=None, help="Read at most this many showers.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the result as JSON.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out.")
@_friendly_errors
def infer(run: Path, data: Path, free: str, sample_size: int | None, max_showers: int | None, out: Path | None,
          force: bool) -> None:  # fmt: skip
    """Infer conditions (a detector's configuration) of showers by maximum likelihood through a flow.

    Gradients through the surrogate's exact density find the conditions that best explain the
    sample; uncertainties are the Laplace approximation (the inverse Hessian at the maximum)
    and the sandwich covariance, which stays valid where the surrogate is not the true density.
    """
    from calosurrogate._io import atomic_output
    from calosurrogate.inference import infer_from_file

    names = tuple(n.strip() for n in free.split(",") if n.strip())
    if out is not None and out.exists() and not force:
        raise OutputExistsError(f"{out} exists; use --force to replace it")
    model = _load_likelihood_run(run, "infer")
    try:
        record = infer_from_file(model, str(data), names, sample_size, max_showers, progress=True)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    record["run"] = str(run)
    if "fit" in record:
        fit = record["fit"]
        for name in names:
            truth = record.get("truth_mean", {}).get(name)
            click.echo(f"{name} = {fit['values'][name]:.4g} ± {fit['errors'][name]:.2g} "
                       f"(sandwich ± {fit['sandwich_errors'][name]:.2g})"
                       + (f" (file's mean {truth:.4g})" if truth is not None else ""))  # fmt: skip
        if not fit["converged"]:
            click.echo("warning: the fit did not converge or left the training range", err=True)
    elif "pseudo_experiments" in record:
        pe = record["pseudo_experiments"]
        click.echo(f"{pe['samples']} samples of {sample_size} showers, {pe['converged']} converged")
        for name, s in pe["summary"].items():
            click.echo(f"{name}: bias {s['bias']:+.3g} ± {s['bias_error']:.2g}, resolution {s['resolution']:.3g}, "
                       f"mean quoted error {s['mean_error']:.3g}, 68% coverage {s['coverage']:.2f} ± {s['coverage_error']:.2f}; "
                       f"sandwich: mean error {s['sandwich']['mean_error']:.3g}, coverage {s['sandwich']['coverage']:.2f}")  # fmt: skip
    else:
        click.echo(f"{len(record['fits'])} samples fitted")
    if out is not None:
        with atomic_output(out, force=force) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
        click.echo(f"wrote {out}")


@main.command()
@click.option("--run", "run", type=click.Path(path_type=Path), required=True, help=RUN_HELP)
@click.option("--objective", default="converted-tag", show_default=True,
              help="Per-shower loss whose mean is minimised: converted-tag (minus the share of photons R9 < 0.94 "
                   "tags as converted), or FILE.py:FUNCTION / MODULE:FUNCTION taking showers (N, V) MeV, "
                   "returning (N,).")  # fmt: skip
@click.option("--free", default="plate_distance", show_default=True, help="Conditions to choose, comma separated.")
@click.option("--condition", "fixed", multiple=True, metavar="NAME=VALUE",
              help="Hold another condition at a value (plate_thickness=1.0); the rest come from --energies.")  # fmt: skip
@click.option("--energies", default=None,
              help="A file whose incident energies (and conditions) the showers take, or a spectrum spec "
                   "(default: the geometry's spectrum).")  # fmt: skip
@click.option("--n", "n_showers", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Showers the surrogate makes per round.")  # fmt: skip
@click.option("--start", "start", multiple=True, metavar="NAME=VALUE", help="First point (default: the middle).")
@click.option("--rounds", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the result as JSON.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out.")
@_friendly_errors
def design(run: Path, objective: str, free: str, fixed: tuple[str, ...], energies: str | None, n_showers: int,
           start: tuple[str, ...], rounds: int, seed: int, out: Path | None, force: bool) -> None:  # fmt: skip
    """Choose conditions (a detector's configuration) that minimise a loss of the surrogate's showers.

    The loss need not be differentiable: its gradient comes through the flow's exact density
    (showers reweighted to nearby conditions), inside the model's training range.
    """
    import numpy as np

    from calosurrogate._io import atomic_output
    from calosurrogate.data import EnergySpectrum
    from calosurrogate.inference import optimise_conditions
    from calosurrogate.inference.design import objective_from_spec
    from calosurrogate.sampling import conditions_from_file

    names = tuple(n.strip() for n in free.split(",") if n.strip())
    if out is not None and out.exists() and not force:
        raise OutputExistsError(f"{out} exists; use --force to replace it")
    model = _load_likelihood_run(run, "design")
    held = dict(_assignment(item, "--condition") for item in fixed)
    first = dict(_assignment(item, "--start") for item in start)
    unknown = sorted((set(held) | set(first) | set(names)) - set(model.condition_names[1:]))
    if unknown:
        raise click.BadParameter(f"{unknown}: the model's conditions are {list(model.condition_names)}")
    if energies is not None and Path(energies).is_file():
        conditions = conditions_from_file(energies, model, n_showers)
    else:
        spectrum = energies or _default_spectrum(model.geometry.name)
        conditions = np.zeros((n_showers, model.n_conditions))
        conditions[:, 0] = EnergySpectrum.parse(spectrum).sample(n_showers, np.random.default_rng(seed))
        missing = [n for n in model.condition_names[1:] if n not in held and n not in names]
        if missing:
            raise click.UsageError(f"--condition: give {missing} a value (or --energies a file that holds them)")
    for name, value in held.items():
        if isinstance(value, tuple):
            raise click.BadParameter(f"{name}: expected NAME=VALUE", param_hint="--condition")
        conditions[:, model.condition_names.index(name)] = value
    low, high = model.condition_range
    bounds = {n: (low[model.condition_names.index(n)], high[model.condition_names.index(n)]) for n in names}
    try:
        loss = objective_from_spec(objective, model.geometry)
        result = optimise_conditions(model.eval(), loss, conditions, names, bounds, start=first or None,
                                     rounds=rounds, seed=seed)  # fmt: skip
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    for name, value in zip(names, result.values, strict=True):
        click.echo(f"{name} = {value:.4g} (training range {bounds[name][0]:.4g} to {bounds[name][1]:.4g})")
    click.echo(f"loss {result.loss:.4g} ± {result.loss_error:.2g} after {len(result.history)} rounds"
               + ("" if result.converged else " (not converged: raise --rounds)"))  # fmt: skip
    if out is not None:
        record = {"run": str(run), "objective": objective, "fixed": held, **result.as_dict()}
        with atomic_output(out, force=force) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
        click.echo(f"wrote {out}")


@main.command()
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("quickstart"), show_default=True
)
@click.option("--geometry", "geometry_name", default="ds2", show_default=True)
@click.option("--model", "model_name", default="flow", show_default=True)
@click.option("--n-train", type=int, default=20_000, show_default=True)
@click.option("--n-reference", type=int, default=20_000, show_default=True)
@click.option("--train-minutes", type=float, default=5.0, show_default=True, help="Training time budget.")
@click.option("--fast", is_flag=True, help="Quick-look evaluation throughout (a smaller classifier too).")
@click.option("--official-sizes", is_flag=True,
              help="FPD, KPD and PRDC at the official sample sizes (about three minutes more on 2 cores).")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--shipped-showers", type=click.IntRange(min=0), default=None,
              help="Showers the shipped model of the geometry samples and is judged on, beside the model trained "
                   "here (default: 5,000; 0: skip it).")  # fmt: skip
@click.option("--force", is_flag=True, help="Redo every step, overwriting the outputs of an earlier run in --out.")
@_friendly_errors
def quickstart(
    out_dir: Path, geometry_name: str, model_name: str, n_train: int, n_reference: int, train_minutes: float,
    fast: bool, official_sizes: bool, seed: int, shipped_showers: int | None, force: bool,
) -> None:  # fmt: skip
    """The main job on the built-in default: simulate -> train -> sample -> evaluate -> report.

    FPD, KPD and PRDC run at quick-look sample sizes unless --official-sizes; the classifier as in
    `calo evaluate`.
    """
    from calosurrogate.evaluation import EvaluationSettings
    from calosurrogate.pipeline import DEFAULT_TRAIN, MAIN_JOB_EVALUATION, SHIPPED_SHOWERS, run_quickstart

    if fast and official_sizes:
        raise click.UsageError("--fast and --official-sizes contradict each other: choose one")
    evaluation = EvaluationSettings.fast() if fast else EvaluationSettings() if official_sizes else MAIN_JOB_EVALUATION
    result = run_quickstart(
        out_dir, geometry_name, n_train, n_reference, seed, model_name,
        train_config=dataclasses.replace(DEFAULT_TRAIN, max_minutes=train_minutes, seed=seed),
        evaluation=evaluation, force=force, echo=click.echo, shipped=shipped_showers != 0,
        shipped_showers=SHIPPED_SHOWERS if shipped_showers is None else shipped_showers,
    )  # fmt: skip
    click.echo(f"Report: {result['report'].resolve()}")


if __name__ == "__main__":  # pragma: no cover
    main()
