"""What admission needs from the executor, read once per applied layer and shared.

An Athena account only changes when the executor applies a layer, so the view of a
principal read while the executor's applied layer is L stays exact until the relay learns
of L+1 (it polls the executor every quarter layer and after each block). Admission then
costs one `get_account` per principal per layer instead of one per transaction — at a
thousand transactions a second from a few hundred wallets, most of the executor queries a
relay made — and concurrent submissions for one principal wait for the same query.

A view is never older than the layer it is filed under: one read just after the executor
applied L+1 is filed under L, and is merely fresher than needed until the relay catches up
and drops every view.

Template code is cached by address without expiry: a template's address is the hash of
its code, so the code behind an address never changes.
"""

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from devnet.errors import RpcError
from relay.admission import Principal

TEMPLATE_CACHE = 64
#: Principals whose views are kept for one layer; beyond it the cache starts over (a
#: bound for a flood of distinct principals, far above what one layer admits).
MAX_VIEWS = 100_000
#: Executor queries in flight at once for one batch of principals.
QUERY_CONCURRENCY = 32

ExecutorCall = Callable[..., Awaitable[Any]]
#: A principal's view and the executor layer it is filed under.
Viewed = tuple[Principal, int]


class ExecutorViews:
    def __init__(self, call: ExecutorCall) -> None:
        self._call = call
        #: The executor layer the cached views belong to.
        self.layer = -1
        self._views: dict[bytes, Principal] = {}
        self._reading: dict[bytes, trio.Event] = {}
        self._templates: OrderedDict[bytes, bytes] = OrderedDict()
        #: Queries made and views served from the cache, for the relay's status.
        self.queries = 0
        self.hits = 0

    def advance(self, layer: int) -> None:
        """The executor applied `layer`: views read before it may be stale."""
        if layer > self.layer:
            self.layer = layer
            self._views.clear()

    def forget(self, address: bytes) -> None:
        """Drop one view (the relay learned that it changed)."""
        self._views.pop(address, None)

    async def principal(self, address: bytes) -> Viewed:
        """The principal's view and the layer it is filed under; RpcError if the executor
        cannot answer (503 when it is unreachable)."""
        while True:
            layer = self.layer
            view = self._views.get(address)
            if view is not None:
                self.hits += 1
                return view, layer
            reading = self._reading.get(address)
            if reading is None:
                return await self._read(address, layer), layer
            await reading.wait()  # someone else's query; then look again

    async def _read(self, address: bytes, layer: int) -> Principal:
        done = self._reading[address] = trio.Event()
        try:
            self.queries += 1
            view = Principal.from_view(await self._call("get_account", address=address))
            if layer == self.layer:  # not filed under a layer that has already passed
                if len(self._views) >= MAX_VIEWS:
                    self._views.clear()
                self._views[address] = view
            return view
        finally:
            del self._reading[address]
            done.set()

    async def principals(self, addresses: Iterable[bytes]) -> dict[bytes, Viewed | RpcError]:
        """Each address's (view, layer), or the RpcError its query raised."""
        out: dict[bytes, Viewed | RpcError] = {}
        limit = trio.CapacityLimiter(QUERY_CONCURRENCY)

        async def one(address: bytes) -> None:
            async with limit:
                try:
                    out[address] = await self.principal(address)
                except RpcError as exc:
                    out[address] = exc

        async with trio.open_nursery() as nursery:
            for address in set(addresses):
                if address in self._views:  # the common case, without a task
                    out[address] = (self._views[address], self.layer)
                    self.hits += 1
                else:
                    nursery.start_soon(one, address)
        return out

    async def template(self, address: bytes) -> bytes | None:
        """A template's code, or None if the executor has no template there."""
        code = self._templates.get(address)
        if code is not None:
            self._templates.move_to_end(address)
            return code
        try:
            code = bytes(await self._call("get_template", address=address))
        except RpcError as exc:
            if exc.code == 404:
                return None
            raise
        self._templates[address] = code
        while len(self._templates) > TEMPLATE_CACHE:
            self._templates.popitem(last=False)
        return code
