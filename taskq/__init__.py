"""taskq: typed asyncio tasks over raw AMQP (RabbitMQ).

::

    app = App("shop", broker="amqp://guest:guest@127.0.0.1:5672/")

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        handle = await add.delay(4, 6)
        assert await handle.result(timeout=10) == 10
"""

from .app import App
from .cancel import CancelResult
from .context import TaskContext, current, current_or_none
from .exceptions import (
    BrokerError,
    BrokerRefused,
    BrokerUnavailable,
    ChannelsExhausted,
    ConfigurationError,
    DecodeError,
    EncodeError,
    InvalidArguments,
    LifecycleError,
    PoolProcessDied,
    PublishError,
    Reject,
    ResultError,
    ResultTimeout,
    ResultUnavailable,
    Retry,
    SendRefused,
    TaskCancelled,
    TaskControl,
    TaskFailed,
    TaskHardTimeout,
    TaskqError,
    TaskRegistrationError,
    TaskTimeout,
    TopologyMismatch,
    WaitRefused,
)
from .handle import TaskHandle
from .hooks import DeadLettered, Hook, Sending, TaskDone, TaskRun
from .redact import install_log_redaction
from .results.base import ErrorInfo, ResultStore, TaskState, TaskStatus
from .retry import RetryPolicy
from .settings import Settings
from .sync import SyncClient, SyncHandle
from .task import SendOptions, Task, TaskCall
from .worker import Worker, WorkerState

__version__ = "0.1.0"

__all__ = [
    "App",
    "BrokerError",
    "BrokerRefused",
    "BrokerUnavailable",
    "CancelResult",
    "ChannelsExhausted",
    "ConfigurationError",
    "DeadLettered",
    "DecodeError",
    "EncodeError",
    "ErrorInfo",
    "Hook",
    "InvalidArguments",
    "LifecycleError",
    "PoolProcessDied",
    "PublishError",
    "Reject",
    "ResultError",
    "ResultStore",
    "ResultTimeout",
    "ResultUnavailable",
    "Retry",
    "RetryPolicy",
    "SendOptions",
    "SendRefused",
    "Sending",
    "Settings",
    "SyncClient",
    "SyncHandle",
    "Task",
    "TaskCall",
    "TaskCancelled",
    "TaskContext",
    "TaskControl",
    "TaskDone",
    "TaskFailed",
    "TaskHandle",
    "TaskHardTimeout",
    "TaskRegistrationError",
    "TaskRun",
    "TaskState",
    "TaskStatus",
    "TaskTimeout",
    "TaskqError",
    "TopologyMismatch",
    "WaitRefused",
    "Worker",
    "WorkerState",
    "__version__",
    "current",
    "current_or_none",
    "install_log_redaction",
]
