"""The shared training loop."""

from calosurrogate.training.loop import CHECKPOINT, LOG, MODEL, TrainConfig, TrainResult, calibrate, train

__all__ = ["CHECKPOINT", "LOG", "MODEL", "TrainConfig", "TrainResult", "calibrate", "train"]
