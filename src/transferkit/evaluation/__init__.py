"""Evaluation: metrics as JSON, plots, and a self-contained HTML report."""

from transferkit.evaluation.metrics import classification_metrics, write_json
from transferkit.evaluation.report import write_report

__all__ = ["classification_metrics", "write_json", "write_report"]
