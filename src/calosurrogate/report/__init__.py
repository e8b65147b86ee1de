"""Evaluation outputs a person reads: metrics.json, a markdown summary, PNG plots, one HTML page."""

from calosurrogate.report.writer import check_evaluation_folder, write_evaluation

__all__ = ["check_evaluation_folder", "write_evaluation"]
