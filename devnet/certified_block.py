"""A certified block as the L1 serves it: decoded and checked in one place.

Every follower of the L1 (the executor, shadow executors, the relay, a syncing smesher)
receives `{layer, block, certificate}` and must refuse anything whose certificate is not
a quorum of the validators on exactly that block of exactly that layer.
"""

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from devnet.block import Block, decode_block
from devnet.certificate import Certificate, ValidatorSet, decode_certificate, verify_certificate
from devnet.errors import CertificateError, DevnetError, WireError
from devnet.wire import RpcClient


def certified_block(
    layer: int, raw_block: bytes, raw_certificate: bytes, validators: list[bytes] | ValidatorSet
) -> tuple[Block, Certificate]:
    """The block and certificate of `layer`, or CertificateError saying what is wrong."""
    try:
        block = decode_block(raw_block)
        cert = decode_certificate(raw_certificate)
    except DevnetError as exc:
        raise CertificateError(f"undecodable certified block of layer {layer}: {exc}") from None
    if block.layer != layer:
        raise CertificateError(f"block of layer {block.layer} served as layer {layer}")
    if not verify_certificate(cert, validators, layer=layer, value=(block.id,)):
        raise CertificateError(f"the certificate of layer {layer} does not certify its block")
    return block, cert


FOLLOW_RETRY = 0.5
#: Layers without a new certified block after which a follower tries another smesher.
STALL_LAYERS = 4


def stall_seconds(layer_duration_ms: int) -> float:
    """How long a follower waits for the next certified block before it suspects its
    smesher (partitioned, or stuck behind) and moves to another one."""
    return max(3.0, STALL_LAYERS * layer_duration_ms / 1000)


async def follow_certified_blocks(
    client: RpcClient,
    next_layer: Callable[[], int],
    handle: Callable[[dict[str, Any]], Awaitable[bool]],
    log: Any,
    stall: float | None = None,
) -> None:
    """Stream `subscribe_blocks` from `next_layer()` into `handle`, forever.

    `handle` returns False to re-subscribe from `next_layer()` again (a gap, a bad block);
    a dropped connection re-subscribes too, after a short pause. With `stall`, a stream
    that brings nothing for that many seconds is given up for the client's next endpoint:
    a smesher cut off from its peers still answers, but certifies nothing new.
    """
    while True:
        try:
            async with client.subscribe("subscribe_blocks", from_layer=next_layer()) as events:
                while (event := await next_or_stall(events, stall, client, log)) is not None:
                    if not await handle(event):
                        break
        except WireError as exc:
            log.debug("block stream interrupted", error=str(exc))
        await trio.sleep(FOLLOW_RETRY)


async def next_or_stall(
    events: AsyncIterator[Any], stall: float | None, client: RpcClient, log: Any
) -> Any | None:
    """The next event; None once the stream ended or brought nothing for `stall` seconds,
    in which case the client moves on to its next endpoint."""
    with trio.move_on_after(math.inf if stall is None else stall):
        try:
            return await anext(events)
        except StopAsyncIteration:
            return None
    endpoint = client.endpoint
    where = f"{endpoint[0]}:{endpoint[1]}" if endpoint else "the smesher"
    log.warning("no certified block; trying another smesher", source=where, seconds=stall)
    client.switch_endpoint(f"no certified block from {where} for {stall:g} s")
    return None
