"""Training loop: resume after a kill gives the weights of an uninterrupted run; bad input is refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from calosurrogate.data import write_showers
from calosurrogate.geometry import get_geometry
from calosurrogate.models import CheckpointError, ConfigError, build_surrogate, load_surrogate
from calosurrogate.sampling import conditions_from_file, conditions_from_spectrum
from calosurrogate.training import TrainConfig, train

SMALL = {"energy_hidden": 16, "shape_hidden": 16, "shape_transforms": 2, "energy_transforms": 2}


class Interrupt(Exception):
    pass


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 200, "learning_rate": 2e-3, "device": "cpu", "seed": 3, **kw})


def test_resume_gives_the_uninterrupted_weights(tiny_geometry, tiny_file, tmp_path) -> None:
    straight = train(
        build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path / "a", _config(ema_decay=0.9), progress=False
    )

    def kill_after_two(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(
            build_surrogate("flow", tiny_geometry, SMALL),
            tiny_file,
            tmp_path / "b",
            _config(ema_decay=0.9),
            progress=False,
            on_epoch=kill_after_two,
        )
    assert not (tmp_path / "b" / "model.pt").exists()
    resumed = train(
        build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path / "b", resume=True, progress=False
    )
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    a = load_surrogate(straight.model_path).state_dict()
    b = load_surrogate(resumed.model_path).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert (tmp_path / "b" / "log.csv").read_text().count("\n") == 5


@pytest.mark.parametrize("schedule", ["onecycle", "plateau", "none"])
def test_schedules_and_early_stopping(tiny_geometry, tiny_file, tmp_path, schedule: str) -> None:
    result = train(
        build_surrogate("flow", tiny_geometry, SMALL),
        tiny_file,
        tmp_path,
        _config(epochs=2, schedule=schedule, optimizer="adamw", patience=1),
        progress=False,
    )
    assert 1 <= result.epochs_done <= 2 and np.isfinite(result.best_val_loss)


def test_existing_run_needs_resume_or_force(tiny_geometry, tiny_file, tmp_path) -> None:
    train(build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path, _config(epochs=1), progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        train(build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path, _config(epochs=1), progress=False)
    with pytest.raises(CheckpointError, match=r"no checkpoint\.pt"):
        train(build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path / "empty", resume=True, progress=False)


def test_bad_configs_are_named(tiny_geometry) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['shape_hiden'\].*valid keys"):
        build_surrogate("flow", tiny_geometry, {"shape_hiden": 3})
    with pytest.raises(ConfigError, match="unknown model 'gann'"):
        build_surrogate("gann", tiny_geometry)
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="per_layer"):
        build_surrogate("flow", get_geometry("ds1-photons"), {"shape_flow": "per_layer"})


def test_fp16_refused_on_cpu(tiny_geometry, tiny_file, tmp_path) -> None:
    with pytest.raises(ConfigError, match="fp16"):
        train(
            build_surrogate("flow", tiny_geometry, SMALL),
            tiny_file,
            tmp_path,
            _config(precision="fp16"),
            progress=False,
        )


def test_mismatched_data_and_checkpoints(tiny_geometry, tiny_file, tmp_path) -> None:
    ds2_file = write_showers(tmp_path / "ds2.h5", np.full((10, 1), 1e3), np.zeros((10, 6480)))
    with pytest.raises(CheckpointError, match=r"6480 voxels.*ds2.*tiny \(36 voxels\)"):
        train(build_surrogate("flow", tiny_geometry, SMALL), ds2_file, tmp_path / "r", _config(), progress=False)
    result = train(
        build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path / "ok", _config(epochs=1), progress=False
    )
    model = load_surrogate(result.model_path)
    from calosurrogate.data import ShowerFileError

    with pytest.raises(ShowerFileError, match="36"):
        conditions_from_file(ds2_file, model)
    angled = build_surrogate("flow", tiny_geometry, SMALL, ("incident_energies", "incident_angles"))
    with pytest.raises(ConfigError, match="incident_angles"):
        conditions_from_spectrum("log-uniform:1GeV:10GeV", 5, angled)
    with pytest.raises(ShowerFileError, match="incident_angles"):
        train(angled, ds2_file, tmp_path / "r2", _config(), progress=False)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_surrogate(junk)
    with pytest.raises(ConfigError, match="conditions have 1 columns"):
        angled.fit_preprocessing(torch.ones(4, 36), torch.ones(4, 2))
        angled.sample(np.ones((3, 1)))


def test_cosine_schedule_fits_the_time_budget(tiny_geometry, tiny_file, tmp_path, monkeypatch) -> None:
    """With a wall-time budget the cosine cycle ends within the budget: the rate has decayed by the
    last epoch, where a cycle over the nominal 1000 epochs would have barely moved. A fake clock
    (10 s per reading) makes the epoch durations, and so the test, independent of machine load."""
    import types

    from calosurrogate.training import loop

    ticks = iter(range(0, 10**6, 10))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))
    config = _config(epochs=1000, schedule="cosine", max_minutes=2.0)
    result = train(build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path / "run", config, progress=False)
    assert result.stopped_because == "time budget"
    assert 2 <= result.epochs_done <= 12
    assert result.history[-1]["lr"] < 0.6 * config.learning_rate


@pytest.mark.parametrize(
    ("family", "overrides", "chunk_size"),
    [("flow", SMALL, 20_000), ("flow", SMALL, 500), ("wgan", {"hidden": 8, "critic_hidden": 8}, 500)],
)
def test_budget_cosine_never_restarts_after_a_slow_first_epoch(
    tiny_geometry, tiny_file, tmp_path, monkeypatch, family, overrides, chunk_size
) -> None:
    """A first epoch three times slower than the rest (data caching, a busy machine) must not end
    the cycle early: the rate falls monotonically over the whole budget and ends near zero, for
    every optimiser. Chunks of 500 showers end in partial batches (11 steps per epoch, not 9), and
    a GAN's generator steps once per ``n_critic`` batches: the cycle must follow the steps taken."""
    import types

    from calosurrogate.training import loop

    clock = {"now": 0.0, "readings": 0}

    def monotonic() -> float:
        clock["readings"] += 1
        clock["now"] += 30.0 if clock["readings"] <= 6 else 10.0
        return clock["now"]

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(monotonic=monotonic))
    config = _config(epochs=1000, schedule="cosine", max_minutes=6.0, chunk_size=chunk_size)
    model = build_surrogate(family, tiny_geometry, overrides)
    result = train(model, tiny_file, tmp_path / "run", config, progress=False)
    rates = [row["lr"] for row in result.history]
    assert result.stopped_because == "time budget" and len(rates) >= 6
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(rates)), rates
    final = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["optimizers"]
    assert len(final) == (2 if family == "wgan" else 1)
    for state in final.values():
        assert state["param_groups"][0]["lr"] < 0.2 * config.learning_rate


def test_cosine_cycles_grow_twice_as_long_on_each_plateau(tiny_geometry, tiny_file, tmp_path) -> None:
    # a learning rate too small to improve anything: every epoch after the first is a plateau epoch
    config = _config(epochs=4, learning_rate=1e-12, restart_epochs=1, plateau_patience=1)
    result = train(build_surrogate("flow", tiny_geometry, SMALL), tiny_file, tmp_path, config, progress=False)
    steps = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["schedulers"]["model"]
    per_epoch = steps["T_0"] // 2 ** (result.epochs_done - 1)
    assert result.epochs_done == 4 and per_epoch > 0
    assert steps["T_0"] == per_epoch * 8 and steps["T_i"] == per_epoch * 8  # doubled after epochs 2, 3 and 4
    with pytest.raises(ConfigError, match="plateau_patience"):
        TrainConfig(schedule="onecycle", plateau_patience=3)
