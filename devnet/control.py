"""The supervisor's control RPC: what `devnet kill|restart|pause|resume` and the client's
`node(name)` ask of a running `devnet up`.

Every method answers with the node's view (name, role, endpoint, pid, state, restarts,
crashes, exit_code, overrides) after the action took effect.
"""

from typing import TYPE_CHECKING, Any

from devnet.errors import RpcError
from devnet.wire import RpcServer, ServerConfig

if TYPE_CHECKING:
    from devnet.orchestrator import Supervisor

REFUSED = 400


def control_server(supervisor: "Supervisor") -> RpcServer:
    from devnet.orchestrator import OrchestratorError

    server = RpcServer("supervisor", ServerConfig(max_connections=32))

    async def guarded(action: Any) -> dict[str, Any]:
        try:
            node = await action
        except OrchestratorError as exc:
            raise RpcError(REFUSED, str(exc)) from None
        view: dict[str, Any] = node.view()
        return view

    async def nodes() -> list[dict[str, Any]]:
        return [node.view() for node in supervisor.nodes]

    async def status() -> dict[str, Any]:
        return supervisor.state()

    async def kill(name: str, graceful: bool = False) -> dict[str, Any]:
        return await guarded(supervisor.kill(name, graceful))

    async def start(name: str, overrides: list[str] | None = None) -> dict[str, Any]:
        return await guarded(supervisor.start(name, _tuple(overrides)))

    async def restart(
        name: str, overrides: list[str] | None = None, graceful: bool = True
    ) -> dict[str, Any]:
        return await guarded(supervisor.restart(name, _tuple(overrides), graceful))

    async def pause(name: str) -> dict[str, Any]:
        return await guarded(_now(supervisor.pause, name))

    async def resume(name: str) -> dict[str, Any]:
        return await guarded(_now(supervisor.resume, name))

    async def attach_shadow() -> dict[str, Any]:
        return await guarded(supervisor.attach_shadow())

    for name, fn in (
        ("nodes", nodes),
        ("status", status),
        ("kill", kill),
        ("start", start),
        ("restart", restart),
        ("pause", pause),
        ("resume", resume),
        ("attach_shadow", attach_shadow),
    ):
        server.add_method(name, fn)
    return server


def _tuple(overrides: list[str] | None) -> tuple[str, ...] | None:
    return None if overrides is None else tuple(overrides)


async def _now(action: Any, name: str) -> Any:
    """A synchronous action, awaitable like the others."""
    return action(name)
