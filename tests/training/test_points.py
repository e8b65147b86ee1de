"""The point-cloud training's settings: which stages a run started from another one trains anew."""

from __future__ import annotations

import pytest

from calosurrogate.models.base import ConfigError, config_from_dict
from calosurrogate.training.points import PointTrainConfig


def test_retrain_names_stages_and_a_new_teacher_needs_a_new_student() -> None:
    assert config_from_dict(PointTrainConfig, {"retrain": ["showerflow", "student"]}).retrain == (
        "showerflow",
        "student",
    )
    with pytest.raises(ConfigError, match=r"unknown stage\(s\) \['calibration'\]"):
        PointTrainConfig(retrain=("calibration",))
    with pytest.raises(ConfigError, match="a new teacher needs a new student"):
        PointTrainConfig(retrain=("teacher",))
    assert PointTrainConfig(retrain=("teacher", "student")).retrain == ("teacher", "student")
