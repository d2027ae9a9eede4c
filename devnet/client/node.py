"""`AsyncNode`: one process of the devnet, to query and to break on purpose.

Kill, restart, pause and resume go through the supervisor of `devnet up` (which owns the
processes); a partition is asked of the smesher itself, which then ignores its peers.
"""

from typing import TYPE_CHECKING, Any

import trio

from devnet.client.discovery import NodeInfo
from devnet.client.errors import ClientError, NotWithin
from devnet.errors import RpcError

if TYPE_CHECKING:
    from devnet.client.network import AsyncDevnet

READY_SECONDS = 30.0


class AsyncNode:
    def __init__(self, net: "AsyncDevnet", info: NodeInfo) -> None:
        self.net = net
        self.info = info
        self.name = info.name
        self.role = info.role

    def __repr__(self) -> str:
        return f"AsyncNode({self.name!r}, {self.role!r}, {self.info.endpoint})"

    async def status(self) -> dict[str, Any]:
        """The node's own status (layer, applied or verified layer, peers, …)."""
        result: dict[str, Any] = await self.net.call(self.name, "status")
        return result

    async def state(self) -> dict[str, Any]:
        """The supervisor's view: pid, state (running, paused, stopped, crashed), restarts."""
        for view in await self.net.nodes():
            if view["name"] == self.name:
                return view
        raise ClientError(f"the supervisor does not know {self.name}")

    async def _control(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            view: dict[str, Any] = await self.net.call(
                "supervisor", method, name=self.name, **params
            )
        except RpcError as exc:
            raise ClientError(f"{method} {self.name}: {exc.message}") from None
        return view

    async def kill(self, graceful: bool = False) -> dict[str, Any]:
        """Stop the process (SIGKILL; SIGTERM if graceful); it stays down until started."""
        return await self._control("kill", graceful=graceful)

    async def start(self, overrides: list[str] | None = None, wait: bool = True) -> dict[str, Any]:
        view = await self._control("start", overrides=overrides)
        if wait:
            await self.wait_ready()
        return view

    async def restart(
        self, overrides: list[str] | None = None, graceful: bool = True, wait: bool = True
    ) -> dict[str, Any]:
        """Stop and start the process, with `--set path=value` config overrides if given
        (an empty list clears earlier ones); waits until it answers RPC again."""
        view = await self._control("restart", overrides=overrides, graceful=graceful)
        if wait:
            await self.wait_ready()
        return view

    async def pause(self) -> dict[str, Any]:
        """Freeze the process (SIGSTOP): it holds its sockets but does nothing."""
        return await self._control("pause")

    async def resume(self) -> dict[str, Any]:
        return await self._control("resume")

    async def partition(self) -> dict[str, Any]:
        """Cut this smesher off from its peers (both ways); its public RPC still answers."""
        return await self._isolate(True)

    async def heal(self) -> dict[str, Any]:
        return await self._isolate(False)

    async def _isolate(self, isolated: bool) -> dict[str, Any]:
        if self.role != "smesher":
            raise ClientError(f"only a smesher can be partitioned ({self.name} is a {self.role})")
        result: dict[str, Any] = await self.net.call(self.name, "set_isolated", isolated=isolated)
        return result

    async def wait_ready(self, seconds: float = READY_SECONDS) -> dict[str, Any]:
        """Wait until the node answers `status`."""
        with trio.move_on_after(seconds):
            while True:
                try:
                    return await self.status()
                except (ClientError, RpcError):
                    await trio.sleep(0.2)
        raise NotWithin(f"{self.name} did not answer within {seconds:.0f} s")
