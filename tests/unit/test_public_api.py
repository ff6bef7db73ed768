"""The public surface: ``taskq.__all__`` is sorted, exists, and holds what users need."""

from __future__ import annotations

import importlib
import inspect

import taskq
import taskq.exceptions

REQUIRED = {
    "App",
    "Task",
    "TaskCall",
    "TaskHandle",
    "RetryPolicy",
    "Retry",
    "Reject",
    "TaskFailed",
    "ResultTimeout",
    "TaskStatus",
    "current",
    "Worker",
    "Settings",
}

# The modules users work with. Their public classes and functions are exported unless listed
# in NOT_EXPORTED; the others (codec, message, topology, transport, outcome, ...) are internals.
USER_MODULES = ["app", "task", "handle", "retry", "settings", "context", "worker", "results.base",
                "hooks"]  # fmt: skip
# Public names of user-facing modules that are deliberately not exported.
NOT_EXPORTED = {
    ("app", "P"),
    ("app", "R"),
    ("task", "P"),
    ("task", "R"),
    ("task", "TaskConfig"),  # reachable as task.config, not constructed by users
    ("handle", "R"),
    ("context", "set_current"),
    ("context", "reset_current"),
    ("settings", "check_queue_name"),
    ("settings", "check_partition_count"),
    ("settings", "check_priority"),
    ("task", "task_name_of"),  # App's registration check
    ("task", "unknown_task"),  # what App.named sends for a task this process lacks
    ("task", "check_pool_options"),  # App's registration check
    ("task", "args_repr"),  # the arguments shown by inspect, events and integrations
    ("handle", "block_on"),  # shared with the sync facade (taskq.sync)
    ("settings", "load_settings"),
    ("retry", "NO_RETRY"),
    ("worker", "ActiveTask"),
    ("worker", "Counters"),
    ("hooks", "Hooks"),  # the chain (app.hooks, worker.hooks): built by taskq, not by users
    ("hooks", "entry_point_hooks"),  # what Hooks.load_entry_points adds
    ("hooks", "init_process"),  # for process pools: taskq.hooks.init_process(app)
    ("hooks", "is_hook_header"),  # the header-name rule that send and retry headers share
}


def test_all_is_sorted() -> None:
    assert taskq.__all__ == sorted(taskq.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(taskq.__all__) == len(set(taskq.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in taskq.__all__ if not hasattr(taskq, name)]
    assert missing == []


def test_required_names_are_exported() -> None:
    assert REQUIRED - set(taskq.__all__) == set()


def test_star_import() -> None:
    namespace: dict[str, object] = {}
    exec("from taskq import *", namespace)  # the one way to test a star import
    assert set(namespace) >= REQUIRED


def test_every_exception_is_exported() -> None:
    classes = {
        name
        for name, obj in vars(taskq.exceptions).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == "taskq.exceptions"
    }
    assert classes - set(taskq.__all__) == set()


def _public_definitions(module_name: str) -> set[str]:
    module = importlib.import_module(f"taskq.{module_name}")
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }


def test_public_definitions_of_user_modules_are_exported() -> None:
    unexported = {
        (module, name)
        for module in USER_MODULES
        for name in _public_definitions(module)
        if name not in taskq.__all__
    } - NOT_EXPORTED
    assert unexported == set()


def test_result_types_are_exported() -> None:
    assert {"ResultStore", "TaskState", "ErrorInfo", "TaskStatus"} <= set(taskq.__all__)


def test_exported_objects_are_the_defining_ones() -> None:
    from taskq.app import App
    from taskq.handle import TaskHandle
    from taskq.task import Task

    assert taskq.App is App
    assert taskq.Task is Task
    assert taskq.TaskHandle is TaskHandle


def test_version() -> None:
    assert isinstance(taskq.__version__, str)
    assert taskq.__version__.count(".") == 2


def test_control_flow_is_not_an_error() -> None:
    assert not issubclass(taskq.Retry, taskq.TaskqError)
    assert not issubclass(taskq.Reject, taskq.TaskqError)
    assert issubclass(taskq.ResultTimeout, TimeoutError)
    assert issubclass(taskq.BrokerUnavailable, ConnectionError)
    assert issubclass(taskq.InvalidArguments, TypeError)
