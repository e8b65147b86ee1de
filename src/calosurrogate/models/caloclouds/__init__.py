"""CaloClouds: showers of highly granular calorimeters as point clouds (ShowerFlow, a flow-matching
point model and its one-step consistency-distilled student); see :mod:`.family`."""

from calosurrogate.models.caloclouds.family import CaloClouds, CaloCloudsConfig, PointVelocity, load_caloclouds
from calosurrogate.models.caloclouds.showerflow import LayerBudget, ShowerFlow

__all__ = ["CaloClouds", "CaloCloudsConfig", "LayerBudget", "PointVelocity", "ShowerFlow", "load_caloclouds"]
