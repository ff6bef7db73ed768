"""msgpack encoding with extension types, and pydantic validation from signatures.

Extension codes (stable: they are part of the wire format, schema version 1):

==== ================ ==========================================
code type             payload
==== ================ ==========================================
1    datetime         ISO 8601 text (keeps the offset; naive stays naive)
2    date             ISO 8601 text
3    UUID             16 raw bytes
4    Decimal          text
5    pydantic model   msgpack of ``model_dump()`` (arrives as a dict; the
                      receiving signature validates it back into the model)
6    time             ISO 8601 text
==== ================ ==========================================

``bytes`` travel as msgpack's native bin type; tuples arrive as lists and are validated
back into tuples by the signature.
"""

from __future__ import annotations

import datetime as dt
import inspect
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import cached_property
from typing import Any, get_type_hints

import msgpack
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from .exceptions import DecodeError, EncodeError, InvalidArguments

EXT_DATETIME = 1
EXT_DATE = 2
EXT_UUID = 3
EXT_DECIMAL = 4
EXT_MODEL = 5
EXT_TIME = 6


def _default(value: Any) -> msgpack.ExtType:
    # datetime before date: datetime is a subclass of date.
    if isinstance(value, dt.datetime):
        return msgpack.ExtType(EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgpack.ExtType(EXT_DATE, value.isoformat().encode())
    if isinstance(value, dt.time):
        return msgpack.ExtType(EXT_TIME, value.isoformat().encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(EXT_UUID, value.bytes)
    if isinstance(value, Decimal):
        return msgpack.ExtType(EXT_DECIMAL, str(value).encode())
    if isinstance(value, BaseModel):
        # A Packer of its own: this runs inside the thread's Packer, which must not re-enter.
        dumped = value.model_dump(mode="python")
        return msgpack.ExtType(
            EXT_MODEL, msgpack.packb(dumped, default=_default, use_bin_type=True, datetime=False)
        )
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise a value of type {type(value).__qualname__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == EXT_TIME:
        return dt.time.fromisoformat(data.decode())
    if code == EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == EXT_DECIMAL:
        return Decimal(data.decode())
    if code == EXT_MODEL:
        return unpack(data)
    raise DecodeError(f"unknown msgpack extension type {code}")


# msgpack.packb builds a Packer per call (a tenth of the cost of a small pack); one Packer per
# thread is reused instead (a Packer is not thread-safe, and plain `def` tasks run in threads).
_packers = threading.local()


def _pack(value: Any) -> bytes:
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(
            default=_default, use_bin_type=True, datetime=False
        )
    try:
        return packer.pack(value)  # type: ignore[no-any-return]
    except BaseException:
        packer.reset()  # drop what a failed pack left in its buffer
        raise


def pack(value: Any) -> bytes:
    """Serialise ``value`` to msgpack; raise EncodeError naming the type that cannot be carried."""
    try:
        return _pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(str(exc)) from exc


def unpack(data: bytes) -> Any:
    """Deserialise msgpack bytes; raise DecodeError on anything malformed."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise DecodeError(f"malformed msgpack body: {_why(exc)}") from exc


def _why(exc: Exception) -> str:
    """What went wrong, never empty: several of msgpack's errors have no text."""
    if isinstance(exc, msgpack.StackError | RecursionError):
        return f"nesting too deep ({type(exc).__name__})"
    return str(exc) or type(exc).__name__


_LATER = object()  # stands for the argument a partial call leaves to be given later

_EXACT = frozenset({int, str, float, bool, bytes})


class Signature:
    """A task function's signature: binds calls at the sender, validates arguments at the worker.

    Built once per task; the pydantic validator is built lazily on first use so that
    forward references in annotations can resolve after the module has finished importing.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.inspected = inspect.signature(func)
        params = self.inspected.parameters.values()
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        # A call with exactly this many positional arguments and no keywords always binds.
        self._simple_arity = len(self.inspected.parameters) if plain else -1

    @cached_property
    def _exact_types(self) -> tuple[type, ...] | None:
        """The parameters' types when every one is a plain int, str, float, bool or bytes:
        arguments of exactly those types need no validation (pydantic would return them as
        they are), which skips pydantic for the most common tasks."""
        hints = [self._hints.get(name, Any) for name in self.inspected.parameters]
        if self._simple_arity < 0 or not all(h in _EXACT for h in hints):
            return None
        return tuple(hints)

    def bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check a call against the signature; return the positional and keyword parts to send."""
        if not kwargs and len(args) == self._simple_arity:
            return list(args), {}  # every parameter given positionally: nothing to check
        try:
            bound = self.inspected.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.func.__qualname__}(): {exc}") from None
        return list(bound.args), dict(bound.kwargs)

    def bind_partial(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check a call that leaves the first parameter to be given later (a workflow step
        that receives the previous result): bind and validate the rest; return the positional
        (without the first) and keyword parts to send. InvalidArguments if they do not fit."""
        name = self.func.__qualname__
        first = next(iter(self.inspected.parameters), None)
        if first is None:
            raise InvalidArguments(f"{name}() takes no arguments, so no previous result")
        try:
            bound = self.inspected.bind(_LATER, *args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{name}(): {exc}") from None
        model = self._model
        if model is not None:
            given = {k: v for k, v in bound.arguments.items() if k != first}
            try:
                model.model_validate(given)
            except ValidationError as exc:
                wrong = [e for e in exc.errors() if e["loc"][:1] != (first,)]
                if wrong:
                    raise InvalidArguments(f"{name}(): {wrong}") from None
        return list(bound.args[1:]), dict(bound.kwargs)

    @cached_property
    def _hints(self) -> dict[str, Any]:
        return get_type_hints(self.func, include_extras=True)

    @cached_property
    def _model(self) -> type[BaseModel] | None:
        # Fields are named p0, p1... with the parameter name as alias, so that a parameter
        # called e.g. `json` or `model_x` cannot clash with BaseModel's own attributes.
        fields: dict[str, Any] = {}
        for index, (name, param) in enumerate(self.inspected.parameters.items()):
            hint = self._hints.get(name, Any)
            default: Any
            # A call may leave *args and **kwargs out: binding then has no entry for them.
            if param.kind is param.VAR_POSITIONAL:
                hint, default = tuple[hint, ...], ()  # type: ignore[valid-type]
            elif param.kind is param.VAR_KEYWORD:
                hint, default = dict[str, hint], {}  # type: ignore[valid-type]
            else:
                default = ... if param.default is param.empty else param.default
            fields[f"p{index}"] = (hint, Field(default, alias=name))
        if all(spec[0] is Any for spec in fields.values()):
            return None  # nothing to validate: skip pydantic on the hot path
        return create_model(
            f"{self.func.__qualname__}Args",
            __config__=ConfigDict(arbitrary_types_allowed=True, protected_namespaces=()),
            **fields,
        )

    def validate(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Bind and validate received arguments; return what to call the function with.

        Raises InvalidArguments with pydantic's explanation when they do not fit.
        """
        if not kwargs and len(args) == self._simple_arity:  # all positional: no bind needed
            exact = self._exact_types
            if exact is not None and all(
                type(arg) is kind for arg, kind in zip(args, exact, strict=True)
            ):
                return tuple(args), {}
            model = self._model
            if model is None:
                return tuple(args), {}
            named = dict(zip(self.inspected.parameters, args, strict=True))
            try:
                values = model.model_validate(named)
            except ValidationError as exc:
                raise InvalidArguments(str(exc)) from None
            return tuple(getattr(values, f"p{i}") for i in range(len(args))), {}
        try:
            bound = self.inspected.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(str(exc)) from None
        model = self._model
        if model is None:
            return bound.args, bound.kwargs
        try:
            validated = model.model_validate(bound.arguments)
        except ValidationError as exc:
            raise InvalidArguments(str(exc)) from None
        for index, name in enumerate(self.inspected.parameters):
            if name in bound.arguments:
                bound.arguments[name] = getattr(validated, f"p{index}")
        return bound.args, bound.kwargs

    @cached_property
    def return_adapter(self) -> TypeAdapter[Any] | None:
        """Validator for results, or None when the return is unannotated or Any."""
        hint = self._hints.get("return", Any)
        if hint is Any or hint is None or hint is type(None):
            return None
        try:
            return TypeAdapter(hint)
        except Exception:  # a type pydantic cannot validate: hand back the raw value
            return None

    def validate_result(self, value: Any) -> Any:
        """Turn a received result back into the annotated return type."""
        adapter = self.return_adapter
        return value if adapter is None else adapter.validate_python(value)
