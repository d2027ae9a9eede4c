"""`Devnet`: the client for plain (non-async) scripts and tests.

    from devnet.client import Devnet

    with Devnet.connect() as net:
        receipt = net.wallets[0].spend(net.wallets[1], 1_000)
        net.node("smesher-3").kill()

It runs an `AsyncDevnet` on a trio event loop in a background thread and waits for each
call, so connections are kept between calls exactly as in async code.
"""

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import trio

from athena_vm.payload import Payload
from devnet.client.account import AsyncAccount, Deployment, Signer
from devnet.client.errors import ClientError
from devnet.client.network import AddressLike, AsyncDevnet
from devnet.client.node import AsyncNode
from devnet.client.records import Account, Receipt, StateProof
from devnet.keys import KeyPair
from devnet.transaction import Transaction

T = TypeVar("T")


class _Loop:
    """A trio loop in a daemon thread holding one connected AsyncDevnet."""

    def __init__(self, target: str | Path | None, timeout: float) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._closing: trio.Event | None = None
        self.net: AsyncDevnet | None = None
        self._thread = threading.Thread(
            target=trio.run, args=(self._main, target, timeout), daemon=True, name="devnet"
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    async def _main(self, target: str | Path | None, timeout: float) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._closing = trio.Event()
        try:
            async with AsyncDevnet.connect(target, timeout=timeout) as net:
                self.net = net
                self._ready.set()
                await self._closing.wait()
        except BaseException as exc:  # reported to the thread that called connect()
            self._error = exc
            self._ready.set()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def call() -> T:
            return await fn(*args, **kwargs)

        if self._token is None or not self._thread.is_alive():
            raise ClientError("this devnet client is closed")
        return trio.from_thread.run(call, trio_token=self._token)

    def close(self) -> None:
        if self._token is not None and self._closing is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._closing.set, trio_token=self._token)
            self._thread.join()


class Node:
    """Synchronous `AsyncNode`."""

    def __init__(self, loop: _Loop, node: AsyncNode) -> None:
        self._loop, self._node = loop, node
        self.name, self.role = node.name, node.role

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.role!r})"

    def status(self) -> dict[str, Any]:
        return self._loop.run(self._node.status)

    def state(self) -> dict[str, Any]:
        return self._loop.run(self._node.state)

    def kill(self, graceful: bool = False) -> dict[str, Any]:
        return self._loop.run(self._node.kill, graceful)

    def start(self, overrides: list[str] | None = None, wait: bool = True) -> dict[str, Any]:
        return self._loop.run(self._node.start, overrides, wait)

    def restart(
        self, overrides: list[str] | None = None, graceful: bool = True, wait: bool = True
    ) -> dict[str, Any]:
        return self._loop.run(self._node.restart, overrides, graceful, wait)

    def pause(self) -> dict[str, Any]:
        return self._loop.run(self._node.pause)

    def resume(self) -> dict[str, Any]:
        return self._loop.run(self._node.resume)

    def partition(self) -> dict[str, Any]:
        return self._loop.run(self._node.partition)

    def heal(self) -> dict[str, Any]:
        return self._loop.run(self._node.heal)

    def wait_ready(self, seconds: float = 30.0) -> dict[str, Any]:
        return self._loop.run(self._node.wait_ready, seconds)


class Wallet:
    """Synchronous `AsyncAccount` (any account the client signs for, not only wallets)."""

    def __init__(self, loop: _Loop, account: AsyncAccount) -> None:
        self._loop, self.account = loop, account
        self.address, self.template = account.address, account.template

    @property
    def bech32(self) -> str:
        return self.account.bech32

    def __str__(self) -> str:
        return self.bech32

    def __repr__(self) -> str:
        return f"Wallet({self.bech32})"

    def info(self) -> Account:
        return self._loop.run(self.account.info)

    def balance(self) -> int:
        return self._loop.run(self.account.balance)

    def nonce(self) -> int:
        return self._loop.run(self.account.nonce)

    def submit(self, payload: Payload, **options: Any) -> bytes:
        return self._loop.run(self.account.submit, payload, **options)

    def send(self, payload: Payload, **options: Any) -> Receipt:
        return self._loop.run(self.account.send, payload, **options)

    def spend(self, to: "AddressLike | Wallet", amount: int, **options: Any) -> Receipt:
        return self._loop.run(self.account.spend, _unwrap(to), amount, **options)

    def submit_spend(self, to: "AddressLike | Wallet", amount: int, **options: Any) -> bytes:
        return self._loop.run(self.account.submit_spend, _unwrap(to), amount, **options)

    def call(
        self,
        to: "AddressLike | Wallet",
        method: str | None,
        args: bytes | None = b"",
        amount: int = 0,
        **options: Any,
    ) -> Receipt:
        return self._loop.run(self.account.call, _unwrap(to), method, args, amount, **options)

    def invoke(self, method: str, args: bytes = b"", **options: Any) -> Receipt:
        return self._loop.run(self.account.invoke, method, args, **options)

    def deploy(self, code: bytes | Path, **options: Any) -> Deployment:
        return self._loop.run(self.account.deploy, code, **options)


def _unwrap(value: "AddressLike | Wallet") -> AddressLike:
    return value.account if isinstance(value, Wallet) else value


class Devnet:
    """Synchronous `AsyncDevnet`. Build it with `Devnet.connect()`; close it (or use it as
    a context manager) when done."""

    def __init__(self, loop: _Loop) -> None:
        assert loop.net is not None
        self._loop, self.net = loop, loop.net
        self.info, self.hrp, self.genesis_id = self.net.info, self.net.hrp, self.net.genesis_id
        self.wallets = [Wallet(loop, w) for w in self.net.wallets]

    @classmethod
    def connect(cls, target: str | Path | None = None, *, timeout: float = 10.0) -> "Devnet":
        return cls(_Loop(target, timeout))

    def close(self) -> None:
        self._loop.close()

    def __enter__(self) -> "Devnet":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run any coroutine function on the client's loop (e.g. one of `self.net`'s)."""
        return self._loop.run(fn, *args, **kwargs)

    # nodes and layers
    def node(self, name: str) -> Node:
        return Node(self._loop, self.net.node(name))

    def nodes(self) -> list[dict[str, Any]]:
        return self._loop.run(self.net.nodes)

    def attach_shadow(self) -> Node:
        return Node(self._loop, self._loop.run(self.net.attach_shadow))

    def layer_now(self) -> int:
        return self.net.layer_now()

    def applied_layer(self) -> int | None:
        return self._loop.run(self.net.applied_layer)

    def wait_layers(self, count: int = 1, node: str | None = None) -> int:
        return self._loop.run(self.net.wait_layers, count, node)

    # state
    def address(self, value: "AddressLike | Wallet") -> bytes:
        return self.net.address(_unwrap(value))

    def bech32(self, value: "AddressLike | Wallet") -> str:
        return self.net.bech32(_unwrap(value))

    def account(self, address: "AddressLike | Wallet") -> Account:
        return self._loop.run(self.net.account, _unwrap(address))

    def balance(self, address: "AddressLike | Wallet") -> int:
        return self._loop.run(self.net.balance, _unwrap(address))

    def storage(self, address: "AddressLike | Wallet", key: bytes) -> bytes:
        return self._loop.run(self.net.storage, _unwrap(address), key)

    def proof(self, address: "AddressLike | Wallet", key: bytes | None = None) -> StateProof:
        return self._loop.run(self.net.proof, _unwrap(address), key)

    def layer(self, layer: int) -> dict[str, Any]:
        return self._loop.run(self.net.layer, layer)

    def verdict(self, layer: int, shadow: str | None = None) -> dict[str, Any]:
        return self._loop.run(self.net.verdict, layer, shadow)

    def divergences(self, shadow: str | None = None) -> list[dict[str, Any]]:
        return self._loop.run(self.net.divergences, shadow)

    # transactions
    def submit(self, tx: Transaction) -> bytes:
        return self._loop.run(self.net.submit, tx)

    def send(self, tx: Transaction, **options: Any) -> Receipt:
        return self._loop.run(self.net.send, tx, **options)

    def receipt(self, tx_id: bytes) -> Receipt | None:
        return self._loop.run(self.net.receipt, tx_id)

    def tx_status(self, tx_id: bytes) -> dict[str, Any] | None:
        return self._loop.run(self.net.tx_status, tx_id)

    def wait_receipt(self, tx_id: bytes, within_layers: int | None = None) -> Receipt:
        return self._loop.run(self.net.wait_receipt, tx_id, within_layers)

    # accounts
    def wallet(self, key: KeyPair) -> Wallet:
        return Wallet(self._loop, self.net.wallet(key))

    def account_of(self, address: "AddressLike | Wallet", template: bytes, sign: Signer) -> Wallet:
        return Wallet(self._loop, self.net.account_of(_unwrap(address), template, sign))

    def spawn(
        self, template: str | bytes, blob: bytes, sign: Signer | KeyPair, *,
        funder: Wallet | None = None,
        amount: int = 10**12,
    ) -> Wallet:  # fmt: skip
        account = self._loop.run(
            self.net.spawn, template, blob, sign, funder=funder and funder.account, amount=amount
        )
        return Wallet(self._loop, account)

    def new_wallet(
        self, key: KeyPair | None = None, *, funder: Wallet | None = None, amount: int = 10**12
    ) -> Wallet:
        account = self._loop.run(
            self.net.new_wallet, key, funder=funder and funder.account, amount=amount
        )
        return Wallet(self._loop, account)

    def new_multisig(
        self, required: int, keys: list[KeyPair], *, signers: list[int] | None = None,
        funder: Wallet | None = None, amount: int = 10**12,
    ) -> Wallet:  # fmt: skip
        account = self._loop.run(
            self.net.new_multisig, required, keys, signers=signers,
            funder=funder and funder.account, amount=amount,
        )  # fmt: skip
        return Wallet(self._loop, account)
