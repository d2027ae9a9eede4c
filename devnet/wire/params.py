"""Declarative parameter checking: a handler's annotations are its parameter schema.

    async def get_balance(address: bytes, layer: int | None = None) -> int: ...

The registry reads the signature once, at registration, and turns each annotation into a
checker; a request's params map is then checked before the handler runs, and anything
missing, unknown or mistyped becomes an INVALID_PARAMS reply naming the field. This keeps
handlers free of defensive type checks on untrusted input. Supported annotations are the
types msgpack produces: int, float, str, bytes, bool, None, Any, list[T], dict[K, V] and
unions/Optional of them. An unsupported annotation fails at registration, not at a request.
"""

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from devnet.errors import RpcError
from devnet.wire.codes import ErrorCode

# A checker returns None when the value fits, else a message naming the offending path.
Checker = Callable[[Any, str], str | None]


def _type_name(tp: Any) -> str:
    if tp is type(None) or tp is None:
        return "None"
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _clip(text: str, limit: int = 64) -> str:
    """Names come from the peer; keep the ones echoed in error messages short."""
    return text if len(text) <= limit else text[:limit] + "…"


def _got(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _scalar(tp: type) -> Checker:
    name = _type_name(tp)
    if tp is int or tp is float:
        accepted: tuple[type, ...] = (int,) if tp is int else (int, float)

        def check_number(value: Any, path: str) -> str | None:
            if isinstance(value, accepted) and not isinstance(value, bool):
                return None
            return f"param '{path}': expected {name}, got {_got(value)}"

        return check_number

    def check(value: Any, path: str) -> str | None:
        return (
            None if isinstance(value, tp) else f"param '{path}': expected {name}, got {_got(value)}"
        )

    return check


def compile_checker(tp: Any) -> Checker:
    """A checker for one annotation; TypeError if the annotation is not supported."""
    if tp is Any:
        return lambda value, path: None
    if tp is None or tp is type(None):
        return _scalar(type(None))
    if tp in (int, float, str, bytes, bool):
        return _scalar(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union or origin is types.UnionType:
        options = [compile_checker(arg) for arg in args]
        name = " | ".join(_type_name(arg) for arg in args)

        def check_union(value: Any, path: str) -> str | None:
            errors = [option(value, path) for option in options]
            if any(error is None for error in errors):
                return None
            # A single non-None alternative (Optional[list[int]]) gives the precise error.
            real = [e for arg, e in zip(args, errors, strict=True) if arg is not type(None)]
            if value is not None and len(real) == 1:
                return real[0]
            return f"param '{path}': expected {name}, got {_got(value)}"

        return check_union
    if tp is list or origin is list:
        item = compile_checker(args[0]) if args else compile_checker(Any)

        def check_list(value: Any, path: str) -> str | None:
            if not isinstance(value, list):
                return f"param '{path}': expected {_type_name(tp)}, got {_got(value)}"
            for index, element in enumerate(value):
                error = item(element, f"{path}[{index}]")
                if error:
                    return error
            return None

        return check_list
    if tp is dict or origin is dict:
        key_check = compile_checker(args[0]) if args else compile_checker(Any)
        value_check = compile_checker(args[1]) if args else compile_checker(Any)

        def check_dict(value: Any, path: str) -> str | None:
            if not isinstance(value, dict):
                return f"param '{path}': expected {_type_name(tp)}, got {_got(value)}"
            for key, element in value.items():
                error = key_check(key, f"{path} key") or value_check(
                    element, f"{path}[{_clip(repr(key))}]"
                )
                if error:
                    return error
            return None

        return check_dict
    raise TypeError(f"unsupported parameter annotation {tp!r}")


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    check: Checker
    required: bool


@dataclass(frozen=True, slots=True)
class ParamSchema:
    """The checked parameters of one handler, derived from its signature."""

    params: tuple[ParamSpec, ...]

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, skip: int = 0) -> "ParamSchema":
        """Read `fn`'s annotated parameters, skipping the first `skip` (e.g. an event sink)."""
        hints = get_type_hints(fn)
        specs: list[ParamSpec] = []
        for parameter in list(inspect.signature(fn).parameters.values())[skip:]:
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                raise TypeError(f"{fn.__name__}: parameter {parameter.name} must be a named one")
            if parameter.name not in hints:
                raise TypeError(f"{fn.__name__}: parameter {parameter.name} needs an annotation")
            specs.append(
                ParamSpec(
                    parameter.name,
                    compile_checker(hints[parameter.name]),
                    parameter.default is parameter.empty,
                )
            )
        return cls(tuple(specs))

    def bind(self, params: dict[Any, Any]) -> dict[str, Any]:
        """The keyword arguments for the handler, or RpcError(INVALID_PARAMS) naming a field."""
        known = {spec.name for spec in self.params}
        for key in params:
            if not isinstance(key, str):
                raise RpcError(
                    ErrorCode.INVALID_PARAMS, f"param name {_clip(repr(key))} is not a string"
                )
            if key not in known:
                raise RpcError(ErrorCode.INVALID_PARAMS, f"unknown param '{_clip(key)}'")
        for spec in self.params:
            if spec.name not in params:
                if spec.required:
                    raise RpcError(ErrorCode.INVALID_PARAMS, f"missing param '{spec.name}'")
                continue
            error = spec.check(params[spec.name], spec.name)
            if error:
                raise RpcError(ErrorCode.INVALID_PARAMS, error)
        return dict(params)
