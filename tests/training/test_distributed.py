"""Data-parallel training on 2 CPU processes (gloo): the averaged gradient is one process's gradient
on the whole batch, every process ends with the same weights, a killed run resumes to the weights
of an uninterrupted one, and the result agrees with one process on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from calosurrogate.models import build_surrogate, load_surrogate
from calosurrogate.models.base import CheckpointError
from calosurrogate.training import TrainConfig, train
from calosurrogate.training.distributed import Processes

pytestmark = pytest.mark.slow

SMALL = {"energy_hidden": 16, "shape_hidden": 16, "shape_transforms": 2, "energy_transforms": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(job: str, world_size: int, *args) -> None:
    """Run ``_job`` in ``world_size`` processes that find each other as torchrun's would."""
    mp.start_processes(_job, args=(world_size, _free_port(), job, *args), nprocs=world_size, start_method="spawn")


def _job(rank: int, world_size: int, port: int, job: str, *args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    {"gradients": _gradients, "train": _train}[job](rank, *args)


def _gradients(rank: int, geometry, showers, conditions, out: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    model = _fitted_model(geometry, showers, conditions)
    half = len(showers) // 2
    lo, hi = (0, half) if rank == 0 else (half, len(showers))
    model.loss(showers[lo:hi], conditions[lo:hi]).mean().backward()
    Processes(rank, 2, rank).average_gradients(model.parameters())
    torch.save([p.grad for p in model.parameters()], out / f"grad{rank}.pt")
    dist.destroy_process_group()


class Interrupt(Exception):
    pass


def _train(
    rank: int, family: str, geometry, data: Path, run: Path, config: TrainConfig, kill_after: int | None
) -> None:
    def stop(epoch: int, row: dict) -> None:
        if epoch == kill_after:
            raise Interrupt

    model = _build(family, geometry) if config is not None else None  # None: resume the saved run
    try:
        result = train(model, data, run, config, resume=config is None, progress=False, on_epoch=stop)
    except Interrupt:
        return
    assert result.main_process == (rank == 0)
    if model is not None:  # trained in place: every process's own weights, to check they never drift apart
        torch.save(model.state_dict(), run / f"weights{rank}.pt")


def _build(family: str, geometry):
    torch.manual_seed(0)
    return build_surrogate(family, geometry, SMALL if family == "flow" else {})


def _fitted_model(geometry, showers, conditions):
    model = _build("flow", geometry)
    model.fit_preprocessing(showers, conditions)
    return model


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 200, "learning_rate": 2e-3, "device": "cpu", "seed": 3, **kw})


def test_averaged_gradients_equal_one_process_on_the_whole_batch(tiny_geometry, tiny_file, tmp_path) -> None:
    from calosurrogate.data.stream import ShowerStream

    showers, conditions = ShowerStream(tiny_file, ("incident_energies",), 0, 256, 1, 256, False).all()
    _spawn("gradients", 2, tiny_geometry, showers, conditions, tmp_path)
    model = _fitted_model(tiny_geometry, showers, conditions)
    model.loss(showers, conditions).mean().backward()
    whole = [p.grad for p in model.parameters()]
    for rank in (0, 1):
        averaged = torch.load(tmp_path / f"grad{rank}.pt")
        for a, b in zip(averaged, whole, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the halves alone differ from the whole: the test can fail
    half = _fitted_model(tiny_geometry, showers, conditions)
    half.loss(showers[:128], conditions[:128]).mean().backward()
    assert not all(
        torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6) for p, g in zip(half.parameters(), whole, strict=True)
    )


def test_two_processes_agree_resume_and_match_one(tiny_geometry, tiny_file, tmp_path) -> None:
    _spawn("train", 2, "flow", tiny_geometry, tiny_file, tmp_path / "straight", _config(), None)
    ranks = [torch.load(tmp_path / "straight" / f"weights{rank}.pt") for rank in (0, 1)]
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=key)

    _spawn("train", 2, "flow", tiny_geometry, tiny_file, tmp_path / "killed", _config(), 2)
    assert not (tmp_path / "killed" / "model.pt").exists()
    with pytest.raises(CheckpointError, match="trained by 2 process"):
        train(None, tiny_file, tmp_path / "killed", resume=True, progress=False)
    _spawn("train", 2, "flow", tiny_geometry, tiny_file, tmp_path / "killed", None, None)
    straight = load_surrogate(tmp_path / "straight" / "model.pt").state_dict()
    resumed = load_surrogate(tmp_path / "killed" / "model.pt").state_dict()
    for key in straight:
        torch.testing.assert_close(straight[key], resumed[key], rtol=1e-5, atol=1e-6, msg=key)

    one = train(_build("flow", tiny_geometry), tiny_file, tmp_path / "one", _config(), progress=False)
    two = [float(line.split(",")[2]) for line in (tmp_path / "straight" / "log.csv").read_text().splitlines()[1:]]
    first = one.history[0]["val_loss"]
    # the same global batch and schedule: validation losses within a tenth of the first epoch's improvement
    improvement = first - one.history[-1]["val_loss"]
    assert improvement > 0
    assert abs(two[-1] - one.history[-1]["val_loss"]) < 0.25 * improvement + 0.02 * abs(first)


@pytest.mark.parametrize("family", ["wgan", "qvae"])
def test_two_optimisers_and_persistent_chains(family: str, tiny_geometry, tiny_file, tmp_path) -> None:
    _spawn("train", 2, family, tiny_geometry, tiny_file, tmp_path, _config(epochs=1), None)
    ranks = [torch.load(tmp_path / f"weights{rank}.pt") for rank in (0, 1)]
    params = dict(_build(family, tiny_geometry).named_parameters())
    for key in params:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=key)
    if family == "qvae":  # each process keeps its own chains: not copies of one another
        chains = [key for key in ranks[0] if key.endswith("chains")]
        assert chains and not torch.equal(ranks[0][chains[0]], ranks[1][chains[0]])


def test_batch_must_split_evenly(tiny_geometry, tiny_file, tmp_path) -> None:
    from calosurrogate.models.base import ConfigError
    from calosurrogate.training.loop import _data

    model = _build("flow", tiny_geometry)
    with pytest.raises(ConfigError, match="multiple of 3"):
        _data(tiny_file, model, _config(batch_size=200), None, Processes(0, 3, 0))
    shares = [_data(tiny_file, model, _config(batch_size=201), None, Processes(r, 3, r)) for r in range(3)]
    assert sum(len(s.train) for s in shares) == shares[0].n_train
    assert len({s.steps_per_epoch for s in shares}) == 1


def test_calo_train_nproc_2(tmp_path) -> None:
    data = tmp_path / "p.h5"
    calo = [sys.executable, "-m", "calosurrogate"]
    subprocess.run([*calo, "simulate", "--geometry", "ds1-photons", "--n", "1200", "--out", str(data), "--quiet"],
                   check=True)  # fmt: skip
    done = subprocess.run(
        [*calo, "train", "--model", "flow", "--data", str(data), "--out", str(tmp_path / "run"), "--nproc", "2",
         "--set", "train.epochs=1", "--set", "train.batch_size=250", "--set", "train.device=cpu",
         "--set", "model.shape_hidden=16"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.count("trained 1 epoch(s)") == 1  # process 0 speaks for both
    assert load_surrogate(tmp_path / "run" / "model.pt").family == "flow"
    import json

    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["train"]["batch_size"] == 250
