"""The one exception tree of taskq.

::

    TaskqError
    ├── ConfigurationError (ValueError)      bad settings, a bad queue name, an unknown setting
    ├── TaskRegistrationError (TypeError)    @app.task on something that cannot be a task
    ├── InvalidArguments (TypeError)         a call that does not fit the task's signature
    ├── EncodeError (TypeError)              a value msgpack cannot carry
    ├── DecodeError (ValueError)             a body that is not taskq's format
    ├── LifecycleError (RuntimeError)        an App used outside `async with app:`, or reopened
    ├── SendRefused                          a before_send hook refused to send a task
    ├── BrokerError
    │   ├── BrokerUnavailable (ConnectionError)   the broker cannot be reached
    │   │   └── BrokerRefused                     it answered, but refused the login or vhost
    │   ├── PublishError                          the broker refused or could not route a publish
    │   ├── ChannelsExhausted                     every channel number of a connection is in use
    │   └── TopologyMismatch                      a queue exists with other arguments
    ├── ResultError
    │   ├── ResultTimeout (TimeoutError)     no outcome within the wait
    │   ├── ResultUnavailable                the store cannot answer for this task
    │   ├── TaskFailed                       the task failed remotely (type, message, traceback)
    │   ├── TaskCancelled                    the task was cancelled (with the cancel's reason)
    │   └── WaitRefused (RuntimeError)       a task awaited another task's result (use a chord)
    ├── PoolProcessDied                      a process pool child died while it ran a task
    └── TaskTimeout (TimeoutError)           a task ran past its timeout (raised in the worker)
        └── TaskHardTimeout                  ... past its hard timeout: its process was killed

Control flow raised inside a task is not an error and does not derive from TaskqError:

    TaskControl
    ├── Retry     run the task again later
    └── Reject    dead-letter the task now, without retrying
"""

from __future__ import annotations

from typing import TypeVar


class TaskqError(Exception):
    """Root of every error taskq raises."""


_Known = TypeVar("_Known", bound=TaskqError)


def find_error(error: BaseException, kinds: tuple[type[_Known], ...]) -> _Known | None:
    """``error`` if it is one of ``kinds``; else, if it is an exception group, the first error
    of one of ``kinds`` inside it (nested groups searched too); else None.

    An ``asyncio.TaskGroup`` wraps whatever fails inside it in an ExceptionGroup: this finds
    the taskq error a caller knows how to answer (e.g. with an exit code) in there.
    """
    if isinstance(error, kinds):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := find_error(inner, kinds)) is not None:
                return found
    return None


class ConfigurationError(TaskqError, ValueError):
    """A setting, queue name or option is invalid."""


class TaskRegistrationError(TaskqError, TypeError):
    """A function cannot be registered as a task (lambda, duplicate name, not nameable)."""


class InvalidArguments(TaskqError, TypeError):
    """The arguments do not fit the task's signature; raised before anything is published."""


class EncodeError(TaskqError, TypeError):
    """A value cannot be serialised to msgpack."""


class DecodeError(TaskqError, ValueError):
    """A message body or header is not in taskq's format."""


class LifecycleError(TaskqError, RuntimeError):
    """An object was used in a state that does not allow it."""


class SendRefused(TaskqError):
    """A ``before_send`` hook refused to send a task (nothing was published). Raise it from
    the hook with the reason; the caller of ``delay()`` / ``send()`` gets it."""


class BrokerError(TaskqError):
    """Something went wrong talking to RabbitMQ. ``reply_code`` is the AMQP reply code when
    RabbitMQ refused the request (404 not found, 403 access refused, 405 resource locked,
    406 precondition failed), else None."""

    def __init__(self, message: str, *, reply_code: int | None = None) -> None:
        super().__init__(message)
        self.reply_code = reply_code


class BrokerUnavailable(BrokerError, ConnectionError):
    """The broker cannot be reached (connection refused, unknown host, timed out, not an AMQP
    port), or it refused the login (BrokerRefused)."""


class BrokerRefused(BrokerUnavailable):
    """The broker answered but refused the connection: wrong user or password, or a virtual
    host that does not exist or that the user may not use. Retrying does not help; fixing
    the broker URL (or the broker's users and permissions) does."""


class ChannelsExhausted(BrokerError):
    """Every channel number a connection negotiated (``channel_max``) is in use: too many
    operations at once on one connection. Numbers are reused as channels close."""


class PublishError(BrokerError):
    """The broker did not accept a publish: it was returned as unroutable, or nacked, or the
    exchange does not exist. ``unroutable`` is True when no queue was bound for it."""

    def __init__(
        self, message: str, *, unroutable: bool = False, reply_code: int | None = None
    ) -> None:
        super().__init__(message, reply_code=reply_code)
        self.unroutable = unroutable


class TopologyMismatch(BrokerError):
    """An exchange or queue already exists with arguments other than the ones taskq declares."""


class ResultError(TaskqError):
    """The outcome of a task cannot be given."""


class ResultTimeout(ResultError, TimeoutError):
    """No outcome arrived within the time waited. The task may still run."""


class ResultUnavailable(ResultError):
    """The result store cannot answer for this task (not sent from here, or expired)."""


class TaskFailed(ResultError):
    """The task failed on the worker. Carries the remote exception as text, never as an object.

    Attributes:
        task_id: the failed task's ID.
        remote_type: the qualified name of the exception class raised in the task.
        remote_message: ``str()`` of that exception.
        remote_traceback: the formatted traceback from the worker.
    """

    def __init__(
        self, task_id: str, remote_type: str, remote_message: str, remote_traceback: str
    ) -> None:
        super().__init__(f"task {task_id} failed: {remote_type}: {remote_message}")
        self.task_id = task_id
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class TaskCancelled(ResultError):
    """The task was cancelled (``handle.cancel()``, ``app.cancel()``, ``taskq cancel``): it
    never ran, or it was stopped, and it is recorded CANCELLED.

    Attributes:
        task_id: the cancelled task's ID.
        reason: the reason given to the cancel ("" if none).
    """

    def __init__(self, task_id: str, reason: str = "") -> None:
        super().__init__(f"task {task_id} was cancelled" + (f": {reason}" if reason else ""))
        self.task_id = task_id
        self.reason = reason


class WaitRefused(ResultError, RuntimeError):
    """A running task awaited another task's result. Refused, as Celery does: parents that
    wait for their children can take every slot of the workers, leaving none for the
    children (a silent deadlock). Send a workflow instead (``chain``, ``chord``: see
    docs/guide/workflows.md), or pass ``allow_in_task=True`` when the awaited task runs on
    workers that never run the waiting one."""


class TaskTimeout(TaskqError, TimeoutError):
    """A task ran longer than its timeout and was stopped (recorded as its failure)."""


class PoolProcessDied(TaskqError):
    """A process pool child exited (a crash, ``os._exit``, the OOM killer) while it ran a
    task. The worker counts it as a redelivery of that task (the crash-loop rule)."""

    def __init__(self, pid: int, returncode: int | None) -> None:
        super().__init__(f"pool process {pid} died running the task (exit status {returncode})")
        self.pid = pid
        self.returncode = returncode


class TaskHardTimeout(TaskTimeout):
    """A task in the process pool ran past its ``hard_timeout``: its process was killed
    (recorded as its failure, reason ``hard-timeout``, or retried if its policy says so)."""


class TaskControl(Exception):
    """Base of the exceptions a task raises to steer its own execution."""


class Retry(TaskControl):
    """Raise inside a task to run it again after ``delay`` seconds (or its retry policy's).

    The attempt counter goes up; past the policy's ``max_attempts`` the task fails for good.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay
        self.reason = reason


class Reject(TaskControl):
    """Raise inside a task to send it to the dead-letter queue now, with ``reason``."""

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
