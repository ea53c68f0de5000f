"""Multi-task learning: several labelled tasks trained jointly on one backbone, with the
seeds' four sharing patterns and pluggable loss weighting (torchjd's gradient aggregators)."""

from transferkit.multitask.learner import MultiTaskFit, MultiTaskLearner, TaskResult, check_tasks
from transferkit.multitask.net import AGGREGATORS, SHARING, WEIGHTINGS, CrossStitch, MultiTaskNet

__all__ = ["AGGREGATORS", "SHARING", "WEIGHTINGS", "CrossStitch", "MultiTaskFit",
           "MultiTaskLearner", "MultiTaskNet", "TaskResult", "check_tasks"]
