"""The shadow executor's RPC: status, divergences, a stream of verdicts."""

from typing import TYPE_CHECKING, Any

from devnet.errors import RpcError
from devnet.wire import RpcServer
from devnet.wire.subscription import EventSink

if TYPE_CHECKING:
    from shadow_executor.node import Shadow

NOT_FOUND = 404


def register(server: RpcServer, node: "Shadow") -> None:
    async def status() -> dict[str, Any]:
        return node.status()

    async def get_divergence(layer: int) -> dict[str, Any]:
        verdict = node.divergences.get(layer)
        if verdict is None:
            raise RpcError(NOT_FOUND, f"no divergence recorded at layer {layer}")
        return verdict.as_dict()

    async def list_divergences() -> list[dict[str, Any]]:
        return [node.divergences[k].as_dict() for k in sorted(node.divergences)]

    async def get_verdict(layer: int) -> dict[str, Any]:
        verdict = node.verdicts.get(layer)
        if verdict is None:
            raise RpcError(NOT_FOUND, f"layer {layer} has no verdict yet")
        return verdict.as_dict()

    async def subscribe_verdicts(sink: EventSink) -> None:
        await node.follow_verdicts(sink)

    server.add_method("status", status)
    server.add_method("get_divergence", get_divergence)
    server.add_method("list_divergences", list_divergences)
    server.add_method("get_verdict", get_verdict)
    server.add_subscription("subscribe_verdicts", subscribe_verdicts)
