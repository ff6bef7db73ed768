"""Result stores: where task outcomes are recorded and read."""

from .base import ErrorInfo, ResultStore, TaskState, TaskStatus

__all__ = ["ErrorInfo", "ResultStore", "TaskState", "TaskStatus"]
