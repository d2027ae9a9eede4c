"""The RPC envelope: which maps are requests, replies, events and error frames.

    request             {id, method, params}       client → server (params may be omitted)
    reply               {id, result} | {id, error: {code, message}}
    subscription event  {sub, event}
    subscription end    {sub, end: true} | {sub, error: {code, message}}
    error frame         {error: {code, message}}   no request to answer (bad frame, bad id)

A request id is an int in [0, 2^63); a subscription's `sub` is the id of the request that
opened it, so the client knows it before any event can arrive. Envelopes are strict (an
unknown key is an invalid request) so that a typo fails loudly instead of being ignored.
"""

from dataclasses import dataclass
from typing import Any, TypeGuard

from devnet.errors import RpcError
from devnet.wire.codes import ErrorCode

MAX_ID = (1 << 63) - 1
MAX_METHOD_LEN = 128
_REQUEST_KEYS = frozenset({"id", "method", "params"})


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    method: str
    params: dict[Any, Any]


def valid_id(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def request_id(message: dict[Any, Any]) -> int | None:
    """The message's id if it is a usable one, so an invalid request can still be answered."""
    value = message.get("id")
    return value if valid_id(value) else None


def parse_request(message: dict[Any, Any]) -> Request:
    """Check a request envelope; RpcError(INVALID_REQUEST) says what is wrong."""
    extra = set(message) - _REQUEST_KEYS
    if extra:
        names = ", ".join(sorted(repr(key)[:40] for key in extra)[:5])
        raise RpcError(ErrorCode.INVALID_REQUEST, f"unknown envelope keys: {names}")
    if "id" not in message:
        raise RpcError(ErrorCode.INVALID_REQUEST, "request without id")
    if not valid_id(message["id"]):
        raise RpcError(ErrorCode.INVALID_REQUEST, f"request id must be an int in [0, {MAX_ID}]")
    method = message.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_LEN:
        raise RpcError(
            ErrorCode.INVALID_REQUEST, f"method must be a string of 1..{MAX_METHOD_LEN} chars"
        )
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise RpcError(ErrorCode.INVALID_REQUEST, "params must be a map")
    return Request(message["id"], method, params)


def error_object(code: int, message: str) -> dict[str, Any]:
    return {"code": int(code), "message": message}


def reply(request_id: int, result: Any) -> dict[str, Any]:
    return {"id": request_id, "result": result}


def error_reply(request_id: int | None, code: int, message: str) -> dict[str, Any]:
    """An error reply, or an error frame when there is no id to answer."""
    body = {"error": error_object(code, message)}
    return body if request_id is None else {"id": request_id, **body}


def parse_error_object(value: Any) -> RpcError:
    """The RpcError an `error` field describes; a malformed one is itself reported."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("code"), int)
        and not isinstance(value.get("code"), bool)
        and isinstance(value.get("message"), str)
    ):
        return RpcError(value["code"], value["message"])
    return RpcError(ErrorCode.INTERNAL_ERROR, "peer sent a malformed error object")
