"""The devnet's one wire protocol: msgpack maps in length-prefixed frames over TCP.

Every process (smeshers, relay, executor, shadow executor, CLI) speaks it.

Frame: a 4-byte big-endian payload length, then one msgpack map (at most
`FrameLimits.max_frame` bytes, default 4 MiB). bytes travel as msgpack bin, text as str;
map keys are str or bytes; no extension types. A peer that sends an oversized, malformed,
truncated, too deeply nested or non-map frame gets an error frame `{error: {code, message}}`
and is disconnected.

Envelope (see `envelope`): request `{id, method, params}`; reply `{id, result}` or
`{id, error: {code, message}}`; subscription events `{sub, event}`, ended by
`{sub, end: true}` or `{sub, error: {code, message}}`; `sub` is the id of the request that
opened the subscription. Error codes are in `codes.ErrorCode`.

Built-in methods: `rpc.ping`, `rpc.methods`, `rpc.unsubscribe(sub)`.
"""

from devnet.wire.backoff import Backoff
from devnet.wire.client import RpcClient, Subscription, call_sync, parse_endpoint
from devnet.wire.codes import ErrorCode
from devnet.wire.frame import (
    DEFAULT_LIMITS,
    FrameLimits,
    FrameReader,
    decode_payload,
    encode_frame,
    encode_payload,
)
from devnet.wire.server import RpcServer, ServerConfig
from devnet.wire.subscription import EventSink, Topic

__all__ = [
    "DEFAULT_LIMITS",
    "Backoff",
    "ErrorCode",
    "EventSink",
    "FrameLimits",
    "FrameReader",
    "RpcClient",
    "RpcServer",
    "ServerConfig",
    "Subscription",
    "Topic",
    "call_sync",
    "decode_payload",
    "encode_frame",
    "encode_payload",
    "parse_endpoint",
]
