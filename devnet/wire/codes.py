"""Wire error codes, JSON-RPC-like so that anyone who knows JSON-RPC can read a reply.

The -32768..-32000 range is reserved for the protocol itself (JSON-RPC's standard codes plus
our own server-defined ones in -32099..-32000). Application errors raised by handlers as
`RpcError(code, message)` use positive codes, which each daemon defines for its own methods;
the wire layer passes any integer through unchanged.
"""

from enum import IntEnum


class ErrorCode(IntEnum):
    """Codes the wire layer itself produces."""

    # JSON-RPC 2.0 standard codes.
    PARSE_ERROR = -32700  # undecodable frame: bad msgpack, limits exceeded, truncated
    INVALID_REQUEST = -32600  # well-formed msgpack, but not a valid request envelope
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602  # missing, unknown or mistyped parameter (message names it)
    INTERNAL_ERROR = -32603  # a handler bug; details go to the server log, not the wire
    # Server-defined codes.
    FRAME_TOO_LARGE = -32001  # a frame's length prefix exceeds the configured limit
    RATE_LIMITED = -32002  # the connection's request rate limit is exhausted; retry later
    SUBSCRIPTION_DROPPED = -32003  # the subscriber fell too far behind and was dropped
    LIMIT_EXCEEDED = -32004  # too many connections, subscriptions, ...
    REPLY_TOO_LARGE = -32005  # the result does not fit in one frame
    REJECTED = -32010  # the handler rejected its input (a `DevnetError` from shared code)
