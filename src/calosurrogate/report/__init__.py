"""Evaluation outputs a person reads: metrics.json, a markdown summary, PNG plots, one HTML page."""

from calosurrogate.report.writer import write_evaluation

__all__ = ["write_evaluation"]
