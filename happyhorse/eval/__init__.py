"""Evaluation: VBench-style temporal metrics, world physics and prompt following, AV sync, reports."""

from .metrics import METRICS, evaluate_clip
from .report import compare_reports, write_report
from .suite import evaluate_clips, evaluate_model

__all__ = ["METRICS", "compare_reports", "evaluate_clip", "evaluate_clips", "evaluate_model", "write_report"]
