"""Sender: the one way out for task messages.

Every task message taskq publishes leaves through a Sender: a send (``Task.delay``,
``TaskCall.delay``, ``App.send``), a batch (``App.send_many``, ``map``), a periodic firing
(built here, committed by the scheduler's lease), and an existing message sent again (a
worker's retry, requeue, crash-loop count or dead-lettering, a DLQ replay: ``republish``).
Each passes :meth:`Sender._emit` just before it is handed to the transport or the lease. A
new task message (not one sent again) also passes the ``before_send`` hooks (taskq.hooks),
which may add headers or refuse it, before its result is tracked; ``after_send`` hooks run
once the broker confirmed it.

The pure part (:func:`build_envelope`, :func:`firing_envelope`, :func:`eta_and_delay`,
:func:`partition_for`) turns a call and the settings into an Envelope; unit tests use it
without a broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import codec, delays, events, topology
from .context import current_or_none
from .exceptions import ConfigurationError, LifecycleError, PublishError, SendRefused
from .handle import TaskHandle
from .hooks import Hook, Hooks, Sending
from .message import Envelope, OutgoingMessage
from .results.base import ResultStore
from .settings import Settings, check_priority, check_queue_name
from .task import SendOptions, Task, TaskCall
from .transport import raise_unconfirmed

if TYPE_CHECKING:
    from .cancel.client import Canceller
    from .periodic.entry import PeriodicEntry
    from .transport import Transport

log = logging.getLogger("taskq.sending")

Routed = tuple[str, str, OutgoingMessage]
"""A message ready to publish: ``(exchange, routing_key, message)``."""

_Checked = tuple[Task[Any, Any], SendOptions, tuple[list[Any], dict[str, Any]]]
"""A call of a batch: its task, its options and its bound, validated arguments."""

SEND_BATCH = 256
"""Calls of a batch send built, then published, at a time (see Sender.send_many)."""

SendItem = (
    tuple[Task[Any, Any] | TaskCall[..., Any] | str, Iterable[Any]]
    | tuple[Task[Any, Any] | TaskCall[..., Any] | str, Iterable[Any], dict[str, Any]]
)
"""One call for ``App.send_many``: (task, args) or (task, args, kwargs)."""


class Sender:
    """Builds task messages, tracks their results in the store and publishes them.

    Detached until :meth:`attach` gives it a connected transport and an open store (an App
    attaches its Sender when opened); used detached, it raises LifecycleError with
    ``closed_message``. Stateless otherwise: any number may share one transport.
    """

    __slots__ = (
        "_closed", "_delivered_of", "_events", "_store", "_transport", "canceller", "hooks",
        "names", "settings",
    )  # fmt: skip

    def __init__(self, closed_message: str, hooks: Hooks | None = None) -> None:
        self._closed = closed_message
        self._transport: Transport | None = None
        self._store: ResultStore | None = None
        self._delivered_of: Callable[[str], asyncio.Future[None] | None] = _never_delivered
        """The store's ``delivered`` futures (see ResultStore; none: the confirm only)."""
        self._events: events.SentEvents | None = None
        self.hooks = Hooks() if hooks is None else hooks
        """The hooks of new messages (``before_send``, ``after_send``)."""
        self.settings: Settings | None = None
        """The settings of the attached transport (None while detached)."""
        self.names: topology.Names | None = None
        """The entity names of the attached transport (None while detached)."""
        self.canceller: Canceller | None = None
        """What the handles of sent tasks cancel with (the App's ``cancel``; None: they
        cannot cancel)."""

    @classmethod
    def over(
        cls,
        transport: Transport,
        store: ResultStore,
        settings: Settings,
        hooks: Iterable[Hook] = (),
    ) -> Sender:
        """A Sender attached to ``transport`` and ``store`` (e.g. a worker's own), whose new
        messages pass ``hooks`` (another sender's ``task.sent`` publisher excepted: this one
        publishes its own when events are on)."""
        own = Hooks(hook for hook in hooks if not isinstance(hook, events.SentEvents))
        sender = cls("this sender is detached", own)
        sender.attach(transport, store, settings)
        return sender

    def attach(self, transport: Transport, store: ResultStore, settings: Settings) -> None:
        """Send through ``transport``, with results tracked in ``store``, by ``settings``
        (queue partitions, priorities, events: those the transport was built from)."""
        self._transport, self._store = transport, store
        self.settings, self.names = settings, transport.names
        self._delivered_of = getattr(store, "delivered", _never_delivered)  # optional
        if settings.events:
            self._events = events.SentEvents(transport)
            self.hooks.add(self._events)

    def detach(self) -> None:
        """Stop using the transport and the store (they are not closed)."""
        if self._events is not None:
            self.hooks.remove(self._events)
            self._events = None
        self._transport = self._store = None
        self.settings = self.names = None
        self._delivered_of = _never_delivered

    @property
    def is_attached(self) -> bool:
        """Whether the Sender can send now."""
        return self._transport is not None

    @property
    def transport(self) -> Transport:
        """The attached transport; LifecycleError while detached."""
        if self._transport is None:
            raise LifecycleError(self._closed)
        return self._transport

    @property
    def store(self) -> ResultStore:
        """The attached result store; LifecycleError while detached."""
        if self._store is None:
            raise LifecycleError(self._closed)
        return self._store

    # -- new messages ------------------------------------------------------------------------

    async def send(
        self,
        task: Task[Any, Any],
        options: SendOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        called_at: float | None = None,
    ) -> TaskHandle[Any]:
        """Send one call; the handle is returned once the broker confirmed the message.
        InvalidArguments for a call that does not fit, whether attached or not. A countdown
        or a relative expiry counts from ``called_at`` (``time.time()`` when the caller
        asked for the send; default: when the message is built)."""
        send = await self._prepare(task, options, args, kwargs, called_at)
        transport, message = self.transport, self._emit(send.message)
        delivered = None
        if not send.envelope.ignore_result:
            delivered = self._delivered_of(send.envelope.task_id)
        try:
            await transport.publish(send.exchange, send.routing_key, message, delivered=delivered)
        except PublishError as exc:
            if not exc.unroutable or send.exchange != transport.names.exchange:
                raise
            # The queue was deleted after this connection declared it (declarations are
            # made once per connection): declare it again and send once more. A returned
            # message went nowhere, so this sends no copy.
            log.warning("%s; declaring queue %r again", exc, send.envelope.queue)
            await transport.declare_work_queue(send.envelope.queue, again=True)
            await transport.publish(send.exchange, send.routing_key, message)
        if send.sending is not None and self.hooks.after_send:
            await self.hooks.notify(self.hooks.after_send, send.sending)
        return send.handle

    async def send_many(
        self, calls: Iterable[SendItem], named: Callable[[str], TaskCall[..., Any]]
    ) -> list[TaskHandle[Any]]:
        """Send many calls with pipelined confirms (see ``App.send_many``); ``named`` turns a
        task name into its sendable view.

        Every call is checked before anything is published: its arguments, its options (once
        per distinct view) and that its arguments can be encoded; with ``before_send`` hooks,
        every message is also built and passes them first. Then the messages are built and
        published ``SEND_BATCH`` at a time, each batch's publish under way while the next is
        built, so that the broker confirms the first while this process builds the rest (built
        all first, the broker idled meanwhile: a batch was no faster than a gather of sends).
        Countdowns and relative expiries count from this call, for every message alike.
        """
        called_at = time.time()
        checked = [self._checked(call, named) for call in calls]
        built: list[_Send] | None = None
        if self.hooks.before_send:  # a hook may refuse any of them: all pass before any goes
            built = [await self._prepare_bound(*call, called_at) for call in checked]
        else:
            self._check_batch(checked)
        transport = self.transport
        sends: list[_Send] = []
        routed: list[Routed] = []
        sizes: list[int] = []
        publishing: list[asyncio.Future[list[BaseException | None]]] = []
        try:
            for start in range(0, len(checked), SEND_BATCH):
                if built is not None:
                    batch = built[start : start + SEND_BATCH]
                else:
                    batch = [await self._prepare_bound(*call, called_at)
                             for call in checked[start : start + SEND_BATCH]]  # fmt: skip
                items = [(send.exchange, send.routing_key, self._emit(send.message))
                         for send in batch]  # fmt: skip
                sends += batch
                routed += items
                sizes.append(len(items))
                publishing.append(asyncio.ensure_future(transport.publish_each(items)))
                await asyncio.sleep(0)  # written now, while the next batch is built
        finally:  # whatever stopped the building, the batches under way are seen through
            outcomes = await asyncio.gather(*publishing, return_exceptions=True)
        results: list[BaseException | None] = []
        for outcome, size in zip(outcomes, sizes, strict=True):
            results += [outcome] * size if isinstance(outcome, BaseException) else outcome
        raise_unconfirmed(routed, results)
        await self.after_send(send.sending for send in sends)
        return [send.handle for send in sends]

    def _checked(self, call: SendItem, named: Callable[[str], TaskCall[..., Any]]) -> _Checked:
        """One call of a batch: its task, its options and its bound, validated arguments."""
        target, args, kwargs = call if len(call) == 3 else (*call, {})
        view = named(target) if isinstance(target, str) else target
        if isinstance(view, TaskCall):
            task, options = view.task, view.send_options
        else:
            task, options = view, SendOptions()
        return task, options, task.signature.bind(tuple(args), kwargs)

    def _check_batch(self, checked: Sequence[_Checked]) -> None:
        """What building a batch's messages could refuse, before any is published: each
        distinct view's options (ConfigurationError) and each call's arguments (EncodeError)."""
        settings = self.settings
        assert settings is not None  # attached: checked by the caller's self.transport
        views: set[tuple[int, SendOptions]] = set()
        for task, options, bound in checked:
            if (id(task), options) not in views:
                views.add((id(task), options))
                build_envelope(settings, task, options, bound, None, False)
            codec.pack(bound)

    async def publish_envelopes(self, envelopes: Sequence[Envelope]) -> None:
        """Publish ready-made task messages (a workflow's steps, each with its task ID set)
        with pipelined confirms. Each passes the ``before_send`` hooks (SendRefused goes to
        the caller, before anything is published) and ``_emit``; their queues are declared."""
        transport = self.transport
        routed, sendings = [], []
        for envelope in envelopes:
            ready, sending = await self._before_send(envelope)
            await transport.declare_work_queue(ready.queue)
            routed.append((transport.names.exchange, ready.route, self._emit(ready.to_message())))
            sendings.append(sending)
        await transport.publish_many(routed)
        await self.after_send(sendings)

    async def firings(
        self, fired: Iterable[tuple[PeriodicEntry, dt.datetime]], *, sent_at: float
    ) -> tuple[list[Routed], list[Sending]]:
        """The messages of periodic firings ``(entry, tick)``, for the scheduler to publish
        with its state in one transaction (nothing is tracked: nobody here waits for them),
        and what to give :meth:`after_send` once that is committed. A firing that a
        ``before_send`` hook refuses (SendRefused) is logged and left out."""
        settings, names = self._require()
        routed, sendings = [], []
        for entry, tick in fired:
            envelope = firing_envelope(settings, entry, tick, sent_at=sent_at)
            try:
                envelope, sending = await self._before_send(envelope)
            except SendRefused as exc:  # the tick counts as fired: it is skipped, not retried
                log.warning("a hook refused firing %s for %s: %s", entry.name, tick, exc)
                continue
            routed.append((names.exchange, envelope.route, self._emit(envelope.to_message())))
            if sending is not None:
                sendings.append(sending)
        return routed, sendings

    async def after_send(self, sendings: Iterable[Sending | None]) -> None:
        """Run the ``after_send`` hooks for messages the broker confirmed."""
        if self.hooks.after_send:
            for sending in sendings:
                if sending is not None:
                    await self.hooks.notify(self.hooks.after_send, sending)

    async def _before_send(self, envelope: Envelope) -> tuple[Envelope, Sending | None]:
        """Run the ``before_send`` hooks: the envelope with the headers they added."""
        if not self.hooks.before_send:
            return envelope, None
        sending = Sending(envelope, dict(envelope.headers), current_or_none())
        await self.hooks.before_sending(sending)
        if sending.headers:
            envelope = dataclasses.replace(envelope, headers=sending.headers)
            sending.envelope = envelope
        return envelope, sending

    async def _prepare(
        self,
        task: Task[Any, Any],
        options: SendOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        called_at: float | None,
    ) -> _Send:
        """Check a call, declare its queue, build its message and track its result."""
        bound = task.signature.bind(args, kwargs)  # a wrong call fails here, open or not
        return await self._prepare_bound(task, options, bound, called_at)

    async def _prepare_bound(
        self,
        task: Task[Any, Any],
        options: SendOptions,
        bound: tuple[list[Any], dict[str, Any]],
        called_at: float | None,
    ) -> _Send:
        """:meth:`_prepare` of a call whose arguments are bound and checked."""
        transport, store = self.transport, self.store
        settings, names = self.settings, transport.names
        assert settings is not None  # attached with the transport
        ignore = options.ignore_result
        if ignore is None:
            ignore = task.config.ignore_result
        reply_to = None if ignore else store.reply_to()
        envelope, delay_ms = build_envelope(
            settings, task, options, bound, reply_to, ignore, called_at=called_at
        )
        sending = None
        if self.hooks.before_send:
            envelope, sending = await self._before_send(envelope)
        message = envelope.to_message()
        if options.expires is not None and delay_ms == 0 and envelope.expires is not None:
            remaining = max(1, int((envelope.expires - _now()).total_seconds() * 1000))
            message = dataclasses.replace(message, expiration_ms=remaining)
        if not ignore:
            store.track(envelope.task_id, task.name)
        handle: TaskHandle[Any] = TaskHandle(
            envelope.task_id, task.name, store, task.validate_result, ignored=ignore,
            canceller=self.canceller,
        )  # fmt: skip
        await transport.declare_work_queue(envelope.queue)
        if delay_ms > 0:
            exchange, key, message = await self._delayed(delay_ms, envelope.route, message)
            return _Send(handle, envelope, exchange, key, message, sending)
        return _Send(handle, envelope, names.exchange, envelope.route, message, sending)

    # -- existing messages -------------------------------------------------------------------

    def republish(
        self, exchange: str, routing_key: str, message: OutgoingMessage
    ) -> Awaitable[None]:
        """Publish an existing task message again, confirmed (a retry, a requeue, a counted
        redelivery, a dead-lettering, a DLQ replay). Raises what ``Transport.publish`` does."""
        return self.transport.publish(exchange, routing_key, self._emit(message))

    async def republish_delayed(self, delay_ms: int, route: str, message: OutgoingMessage) -> None:
        """:meth:`republish` through the delay levels: to ``route`` after ``delay_ms`` (> 0),
        its delay path declared first."""
        await self.transport.declare_work_queue(topology.logical_queue(route))
        exchange, key, message = await self._delayed(delay_ms, route, message)
        await self.transport.publish(exchange, key, self._emit(message))

    async def _delayed(
        self, delay_ms: int, route: str, message: OutgoingMessage
    ) -> tuple[str, str, OutgoingMessage]:
        """Where ``message`` goes to reach ``route`` in ``delay_ms`` (taskq.delays), with the
        delay path it needs declared: its hold queue, through the levels if far off. A
        transport that does not hold (the in-memory one) takes the whole delay in its levels."""
        transport, names = self.transport, self.transport.names
        if not transport.holds_delays:
            await transport.declare_delay_path(delay_ms)
            key = topology.delay_routing_key(delay_ms, route)
            return names.delay_exchange(delay_ms), key, message
        exchange, key, levels_ms = delays.target(names, delay_ms, route)
        due = delays.due_header(delay_ms)
        if not levels_ms:
            return exchange, key, _with_due(message, due, None)
        # Written late (the socket full in a burst), it gets the levels delay left by then: a
        # window less, or none, when its own path or one shorter one is declared.
        shorter = levels_ms - delays.HOLD_WINDOW_MS
        for path_ms in (levels_ms, shorter) if shorter > 0 else (levels_ms,):
            await transport.declare_delay_path(path_ms)
        declared = {0, levels_ms, shorter}

        def route_when_written() -> tuple[str, str]:
            left = delays.target(names, delays.time_left_ms(due), route)
            return left[:2] if left[2] in declared else (exchange, key)

        return exchange, key, _with_due(message, due, route_when_written)

    # -- the way out -------------------------------------------------------------------------

    def _emit(self, message: OutgoingMessage) -> OutgoingMessage:
        """The message to publish for ``message``: every outgoing task message passes here,
        right before the transport (or the scheduler's lease) gets it.

        This is the one point where send hooks are to run. Keep it synchronous and cheap:
        it is on the hot path of every send.
        """
        return message

    def _require(self) -> tuple[Settings, topology.Names]:
        if self.settings is None or self.names is None:
            raise LifecycleError(self._closed)
        return self.settings, self.names


@dataclasses.dataclass(slots=True)
class _Send:
    """One checked call, ready to publish."""

    handle: TaskHandle[Any]
    envelope: Envelope
    exchange: str
    routing_key: str
    message: OutgoingMessage
    sending: Sending | None
    """What the send hooks saw (None: there were none)."""


def _with_due(
    message: OutgoingMessage,
    due: dict[str, Any],
    route_when_written: Callable[[], tuple[str, str]] | None,
) -> OutgoingMessage:
    """``message`` with its due time in its headers (and the route to ask when it is written),
    and in the copy it is resent as. (Built field by field: ``dataclasses.replace`` cost a
    tenth of a delayed send.)"""
    m, resend = message, message.resend
    return OutgoingMessage(
        body=m.body,
        message_id=m.message_id,
        type=m.type,
        headers={**m.headers, **due} if m.headers else due,
        priority=m.priority,
        reply_to=m.reply_to,
        correlation_id=m.correlation_id,
        expiration_ms=m.expiration_ms,
        timestamp=m.timestamp,
        persistent=m.persistent,
        content_type=m.content_type,
        route_when_written=route_when_written,
        resend=None if resend is None else (lambda: _with_due(resend(), due, route_when_written)),
    )


# -- pure: envelopes -------------------------------------------------------------------------


def build_envelope(
    settings: Settings,
    task: Task[Any, Any],
    options: SendOptions,
    bound: tuple[list[Any], dict[str, Any]],
    reply_to: str | None,
    ignore_result: bool,
    *,
    sent_at: float | None = None,
    scheduled_for: dt.datetime | None = None,
    called_at: float | None = None,
) -> tuple[Envelope, int]:
    """The envelope of a call with bound arguments, and its delay in milliseconds (a
    countdown or a relative expiry counts from ``called_at``, default now).

    ConfigurationError for options that do not fit (a priority out of range or on a quorum
    queue, a bad queue name, countdown and eta together, a naive eta or expiry). A periodic
    firing gives its ``scheduled_for`` tick and has no parent task.
    """
    bound_args, bound_kwargs = bound
    cfg = task.config
    # The task's own queue was checked when it was registered.
    queue = cfg.queue if options.queue is None else check_queue_name(options.queue)
    if options.priority is not None:
        check_priority(settings, options.priority, queue, explicit=True)
    priority = options.priority if options.priority is not None else cfg.priority
    if priority is None:
        priority = settings.default_priority
    eta, delay_ms = eta_and_delay(options, called_at)
    parent = current_or_none() if scheduled_for is None else None
    task_id = options.task_id or _new_task_id()
    return (
        Envelope(
            task_id=task_id,
            task_name=cfg.name,
            queue=queue,
            args=bound_args,
            kwargs=bound_kwargs,
            priority=check_priority(settings, priority, queue),
            sent_at=time.time() if sent_at is None else sent_at,
            eta=eta,
            expires=_absolute(options.expires, called_at),
            reply_to=reply_to,
            scheduled_for=scheduled_for,
            ignore_result=ignore_result,
            dedupe=options.task_id is not None,  # an ID of the caller's may be sent twice
            parent_id=parent.task_id if parent else None,
            root_id=(parent.root_id or parent.task_id) if parent else None,
            partition=partition_for(settings, queue, options.partition_key, task_id),
        ),
        delay_ms,
    )


def firing_envelope(
    settings: Settings, entry: PeriodicEntry, tick: dt.datetime, *, sent_at: float
) -> Envelope:
    """The task message that fires ``entry`` for ``tick``. Its task ID is derived from the
    entry and the tick, so a durable store skips a tick that already ran; nobody waits for
    its result over AMQP (no reply address): a durable store records it by ID."""
    options = SendOptions(task_id=entry.firing_id(tick))
    bound = (entry.args, entry.kwargs)  # bound and checked when the entry was made
    ignore = entry.task.config.ignore_result
    envelope, _ = build_envelope(settings, entry.task, options, bound, None, ignore,
                                 sent_at=sent_at, scheduled_for=tick)  # fmt: skip
    return envelope


def partition_for(
    settings: Settings, queue: str, key: str | bytes | int | None, task_id: str
) -> int | None:
    """The partition of ``queue`` a task goes to: by ``key`` if given, else by its ID
    (None when the queue is not partitioned)."""
    count = settings.partitions_of(queue)
    return topology.partition_of(task_id if key is None else key, count)


def eta_and_delay(
    options: SendOptions, called_at: float | None = None
) -> tuple[dt.datetime | None, int]:
    """The ETA and the delay in milliseconds of a send (a past ETA means now). A countdown
    counts from ``called_at`` (epoch seconds; default now): from when the caller asked for
    the send, not from when its message is built, which in a burst of sends comes later."""
    if options.countdown is not None and options.eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if options.eta is not None:
        if options.eta.tzinfo is None:
            raise ConfigurationError(
                "eta must be timezone-aware (e.g. datetime.now(timezone.utc) + timedelta(...))"
            )
        eta = options.eta
    elif options.countdown is not None:
        if options.countdown < 0 or not math.isfinite(options.countdown):
            raise ConfigurationError("countdown must be a finite number of seconds >= 0")
        eta = _since(called_at) + dt.timedelta(seconds=options.countdown)
    else:
        return None, 0
    delay_ms = max(0, math.ceil((eta - _now()).total_seconds() * 1000))
    if delay_ms > topology.MAX_DELAY_MS:
        raise ConfigurationError(
            f"delay of {delay_ms / 1000:.0f} s is longer than the longest supported "
            f"({topology.MAX_DELAY_SECONDS:.0f} s, about 795 days)"
        )
    return eta, delay_ms


def _never_delivered(task_id: str) -> None:
    """A store without ``delivered``: a send waits for the broker's confirm alone."""
    return None


_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant, version 4


def _new_task_id() -> str:
    """A random UUID4 as text. From ``random``, not ``os.urandom``: a task ID must be unique,
    not secret, and this costs no system call per send (``random`` reseeds after a fork).
    The bits and the text are those of ``str(uuid.UUID(int=..., version=4))``, without the
    UUID object (a third of the cost)."""
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _since(called_at: float | None) -> dt.datetime:
    """``called_at`` (epoch seconds) as a datetime; None: now."""
    return _now() if called_at is None else dt.datetime.fromtimestamp(called_at, dt.UTC)


def _absolute(when: float | dt.datetime | None, called_at: float | None) -> dt.datetime | None:
    if when is None:
        return None
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise ConfigurationError("expires must be a timezone-aware datetime (or seconds)")
        return when
    return _since(called_at) + dt.timedelta(seconds=when)
