"""Property-based inputs (hypothesis) for the two parsers every user input goes through: the shower
file validator and the config parser. Whatever they are given, they accept it or refuse it with their
own one-line error, never another exception. The number of examples is the hypothesis profile's
(tests/conftest.py: ``ci`` by default, ``harness`` for benchmarks/fault_harness.py)."""

from __future__ import annotations

import dataclasses
import typing

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calosurrogate.data import ShowerFile, ShowerFileError, inspect_file, read_showers
from calosurrogate.models.base import ConfigError, config_from_dict
from calosurrogate.training import TrainConfig

DTYPES = ["float32", "float64", "float16", "int32", "uint8", "bool", "S4", "complex64"]
SPECIAL = [0.0, -1.0, 1.0, 5e3, np.nan, np.inf, -np.inf, 1e30, -0.0]


@st.composite
def datasets(draw, first: int | None = None):
    """A root dataset: shape (ndim 0-3, first axis optionally fixed), dtype and values."""
    ndim = draw(st.integers(0, 3))
    shape = [draw(st.integers(0, 5)) for _ in range(ndim)]
    if first is not None and ndim and draw(st.booleans()):
        shape[0] = first
    dtype = draw(st.sampled_from(DTYPES))
    size = int(np.prod(shape)) if shape else 1
    values = draw(st.lists(st.sampled_from(SPECIAL), min_size=size, max_size=size))
    array = np.asarray(values, dtype=np.float64).reshape(shape)
    if dtype == "S4":
        return np.asarray(array.astype(str), dtype="S4")
    with np.errstate(invalid="ignore", over="ignore"):
        return np.nan_to_num(array).astype(dtype) if np.dtype(dtype).kind in "iub" else array.astype(dtype)


@st.composite
def shower_files(draw):
    """The content of a file: each standard dataset present or not, a group, or a random dataset."""
    n = draw(st.integers(0, 4))
    content = {}
    for name in ("incident_energies", "showers", "incident_angles"):
        kind = draw(st.sampled_from(["dataset", "dataset", "missing", "group", "proper"]))
        if kind == "dataset":
            content[name] = draw(datasets(first=n))
        elif kind == "group":
            content[name] = "group"
        elif kind == "proper":
            width = 1 if name != "showers" else draw(st.integers(1, 4))
            values = draw(st.lists(st.sampled_from(SPECIAL), min_size=n * width, max_size=n * width))
            content[name] = np.asarray(values, dtype=np.float32).reshape(n, width)
    return content


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=shower_files())
def test_file_validator_accepts_or_names_the_problem(tmp_path, content) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        for name, value in content.items():
            if isinstance(value, str):
                f.create_group(name)
            else:
                f[name] = value
    for read in (
        lambda: read_showers(path),
        lambda: read_showers(path, negative="clip", conditions=("incident_angles",)),
        lambda: inspect_file(path),
        lambda: ShowerFile(path, conditions=("incident_angles",)).read_conditions(),
    ):
        try:
            result = read()
        except ShowerFileError as err:
            assert str(err).startswith(str(path)) and "\n" not in str(err)
            continue
        if hasattr(result, "showers"):  # what is accepted is usable: finite, positive energies
            assert np.isfinite(result.showers).all() and (result.incident_energies > 0).all()
            assert result.showers.shape[0] == result.incident_energies.shape[0]


FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(0, 3), max_size=3), st.sampled_from(["1e-3", "adam", "cosine", "auto"]),
)  # fmt: skip


@given(values=st.dictionaries(st.sampled_from([*FIELDS, "epoch", "lr"]), VALUES, max_size=5))
def test_config_parser_accepts_typed_values_or_names_the_key(values) -> None:
    try:
        config = config_from_dict(TrainConfig, values, where="train config")
    except ConfigError as err:
        assert str(err).startswith("train config") and "\n" not in str(err)
        return
    hints = typing.get_type_hints(TrainConfig)
    for name in FIELDS:  # what is accepted has its declared type
        value, hint = getattr(config, name), hints[name]
        allowed = typing.get_args(hint) or (hint,)
        assert any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed), (name, value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "abc"}, "train config: epochs = 'abc': expected an integer"),
        ({"epochs": 1.5}, "train config: epochs = 1.5: expected an integer"),
        ({"epochs": True}, "train config: epochs = True: expected an integer"),
        ({"grad_clip": "x"}, "train config: grad_clip = 'x': expected float | None"),
        ({"optimizer": 3}, "train config: optimizer = 3: expected a string"),
        ({"epoch": 3}, "train config: unknown key(s) ['epoch']"),
    ],
)
def test_config_errors_name_key_value_and_type(values, message) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(TrainConfig, values, where="train config")
    assert str(err.value).startswith(message)
