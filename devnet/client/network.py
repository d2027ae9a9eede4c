"""`AsyncDevnet`: a trio client of a running devnet.

    async with AsyncDevnet.connect() as net:
        alice, bob = net.wallets[0], net.wallets[1]
        receipt = await alice.spend(bob, 1_000)
        assert await bob.balance() >= 1_000
        assert (await net.proof(bob.address)).verify()

Transactions go to the relay; their receipts, accounts and proofs come from the executor;
verdicts from the shadow executor; node faults (kill, restart, pause) from the supervisor
of `devnet up`. One connection per node is opened on first use and kept, reconnecting on
its own after a node restarts.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
import trio

from athena_vm.address import spawn_address
from athena_vm.payload import Payload, selector
from devnet import methods
from devnet.address import decode_address, encode_address
from devnet.builtin_templates import builtin_templates, template
from devnet.client.account import AsyncAccount, Signer
from devnet.client.discovery import DevnetInfo, NodeInfo, read_info
from devnet.client.errors import (
    ClientError,
    NotWithin,
    TransactionDropped,
    TransactionRejected,
)
from devnet.client.node import AsyncNode
from devnet.client.records import Account, Receipt, StateProof, checked
from devnet.errors import DevnetError, RpcError, WireError
from devnet.keys import KeyPair
from devnet.log import configure
from devnet.orchestrator import progress_field
from devnet.transaction import Transaction
from devnet.wire import RpcClient

NOT_FOUND = 404
#: A receipt is looked for this often, in layers (at least every 100 ms).
POLLS_PER_LAYER = 5
#: With no `within_layers`, a transaction gets this many layers to be executed.
DEFAULT_WITHIN_LAYERS = 30

AddressLike = bytes | str | AsyncAccount


class AsyncDevnet:
    """A connected devnet. Build it with `AsyncDevnet.connect()`."""

    def __init__(self, info: DevnetInfo, nursery: trio.Nursery, timeout: float) -> None:
        self.info = info
        self.hrp = info.hrp
        self.genesis_id = info.genesis_id
        self.timeout = timeout
        self._nursery = nursery
        self._clients: dict[str, RpcClient] = {}
        self._opening = trio.Lock()
        self.wallets: list[AsyncAccount] = [self.wallet(key) for key in info.wallet_keys]

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, target: str | Path | None = None, *, timeout: float = 10.0
    ) -> AsyncIterator["AsyncDevnet"]:
        """Connect to the devnet of `target` (a data dir, devnet.json or config; see
        `devnet.client.discovery`). Connections close when the block exits."""
        if not structlog.is_configured():
            configure("warning")  # a script's output is its own, not the wire's chatter
        info = read_info(target)
        async with trio.open_nursery() as nursery:
            yield cls(info, nursery, timeout)
            nursery.cancel_scope.cancel()

    # --- nodes ---------------------------------------------------------------------------

    async def client(self, name: str) -> RpcClient:
        """The connection to node `name` (or "supervisor"), opened on first use."""
        async with self._opening:
            if name not in self._clients:
                endpoint = (
                    self.info.supervisor if name == "supervisor" else self.info.node(name).endpoint
                )
                if endpoint is None:
                    raise ClientError("this devnet has no supervisor endpoint")
                client = RpcClient(endpoint, node="devnet-client", timeout=self.timeout)
                self._clients[name] = await self._nursery.start(_hold, client)
            return self._clients[name]

    async def call(self, name: str, method: str, /, **params: Any) -> Any:
        """Call `method` on node `name`; a node that cannot be reached is a ClientError."""
        client = await self.client(name)
        try:
            return await client.call(method, **params)
        except RpcError:
            raise
        except WireError as exc:
            raise ClientError(f"{name}: {exc}") from None

    def _role(self, role: str) -> str:
        nodes = self.info.by_role(role)
        if not nodes:
            raise ClientError(f"this devnet has no {role}")
        return nodes[0].name

    @property
    def relay(self) -> str:
        return self._role("relay")

    @property
    def executor(self) -> str:
        return self._role("executor")

    @property
    def shadow(self) -> str:
        return self._role("shadow")

    @property
    def smeshers(self) -> list[str]:
        return [n.name for n in self.info.by_role("smesher")]

    def node(self, name: str) -> AsyncNode:
        """A node of the devnet, to query or to inject faults into."""
        return AsyncNode(self, self.info.node(name))

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node as the supervisor sees it (pid, state, restarts, crashes)."""
        result: list[dict[str, Any]] = await self.call("supervisor", "nodes")
        return result

    async def attach_shadow(self) -> AsyncNode:
        """Start one more shadow executor under the supervisor; it replays from genesis."""
        view = await self.call("supervisor", "attach_shadow")
        info = NodeInfo(view["name"], view["role"], view["endpoint"], Path(view["log"]))
        self.info = replace(self.info, nodes=(*self.info.nodes, info))
        return AsyncNode(self, info)

    # --- layers --------------------------------------------------------------------------

    def layer_now(self) -> int:
        return self.info.layer_now()

    @property
    def layer_seconds(self) -> float:
        return self.info.layer_duration_ms / 1000

    async def applied_layer(self) -> int | None:
        """The last layer the executor applied."""
        status = await self.call(self.executor, "status")
        applied: int | None = status["applied_layer"]
        return applied

    async def wait_layers(self, count: int = 1, node: str | None = None) -> int:
        """Wait until `node` (default: the executor) has moved `count` layers on; returns
        the layer it reached. Gives up (NotWithin) after 3 × count layers + 10 s."""
        name = node or self.executor
        field = progress_field(self.info.node(name).role)
        start = (await self.call(name, "status")).get(field)
        target = (-1 if start is None else start) + count
        reached = await self.wait_until(name, field, target, 3 * count * self.layer_seconds + 10)
        return reached

    async def wait_until(self, name: str, field: str, target: int, seconds: float) -> int:
        """Wait until status()[field] of node `name` reaches `target`."""
        with trio.move_on_after(seconds):
            while True:
                try:
                    value = (await self.call(name, "status")).get(field)
                except (ClientError, RpcError):
                    value = None
                if value is not None and value >= target:
                    return int(value)
                await trio.sleep(self.layer_seconds / POLLS_PER_LAYER)
        raise NotWithin(f"{name} did not reach {field} {target} within {seconds:.0f} s")

    # --- state ---------------------------------------------------------------------------

    def address(self, value: AddressLike) -> bytes:
        """Raw 24-byte address of a bech32 text, bytes, or account handle."""
        if isinstance(value, AsyncAccount):
            return value.address
        if isinstance(value, bytes):
            return value
        try:
            return decode_address(value, self.hrp)
        except DevnetError as exc:
            raise ClientError(str(exc)) from None

    def bech32(self, address: AddressLike) -> str:
        return encode_address(self.address(address), self.hrp)

    async def account(self, address: AddressLike) -> Account:
        view = await self.call(self.executor, "get_account", address=self.address(address))
        return Account.from_view(view)

    async def balance(self, address: AddressLike) -> int:
        return (await self.account(address)).balance

    async def nonce(self, address: AddressLike) -> int:
        return (await self.account(address)).nonce

    async def storage(self, address: AddressLike, key: bytes) -> bytes:
        value: bytes = await self.call(
            self.executor, "get_storage", address=self.address(address), key=key
        )
        return value

    async def proof(self, address: AddressLike, key: bytes | None = None) -> StateProof:
        """A Merkle proof of an account (or of one of its storage slots) in the state root
        of the executor's latest layer."""
        reply = await self.call(self.executor, "get_proof", address=self.address(address), key=key)
        return StateProof.from_reply(reply)

    async def layer(self, layer: int) -> dict[str, Any]:
        """The executor's record of an applied layer: root, receipts root, tx ids."""
        result: dict[str, Any] = await self.call(self.executor, "get_layer", layer=layer)
        return result

    async def verdict(self, layer: int, shadow: str | None = None) -> dict[str, Any]:
        """The shadow executor's verdict on a layer (verified, or the first divergence)."""
        result: dict[str, Any] = await self.call(shadow or self.shadow, "get_verdict", layer=layer)
        return result

    async def divergences(self, shadow: str | None = None) -> list[dict[str, Any]]:
        """Every divergence the shadow executor has found, oldest first."""
        result: list[dict[str, Any]] = await self.call(shadow or self.shadow, "list_divergences")
        return result

    # --- transactions --------------------------------------------------------------------

    async def submit(self, tx: Transaction) -> bytes:
        """Hand a signed transaction to the relay; its id once the relay holds it."""
        try:
            tx_id = await self.call(self.relay, "submit_tx", tx=tx.encode())
        except RpcError as exc:
            raise TransactionRejected(tx.id, exc.message) from None
        return bytes(tx_id)

    async def receipt(self, tx_id: bytes) -> Receipt | None:
        """The receipt of an executed transaction, or None if it is not executed (yet)."""
        try:
            record = await self.call(self.executor, "get_receipt", tx_id=tx_id)
        except RpcError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        return Receipt.from_record(record)

    async def tx_status(self, tx_id: bytes) -> dict[str, Any] | None:
        """The relay's view of a transaction: pending, bundled, included, executed, dropped."""
        try:
            view: dict[str, Any] = await self.call(self.relay, "tx_status", id=tx_id)
        except RpcError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        return view

    async def wait_receipt(self, tx_id: bytes, within_layers: int | None = None) -> Receipt:
        """The receipt once the executor has executed the transaction.

        Raises TransactionDropped if the relay gives up on it, and NotWithin if it is not
        executed within `within_layers` layers from now (default 30).
        """
        layers = DEFAULT_WITHIN_LAYERS if within_layers is None else within_layers
        deadline = self.layer_now() + layers
        while True:
            receipt = await self._receipt_if_reachable(tx_id)
            if receipt is not None:
                return receipt
            view = await self._status_if_reachable(tx_id)
            if view is not None and view.get("state") == "dropped":
                raise TransactionDropped(tx_id, str(view.get("reason")))
            if self.layer_now() > deadline:
                state = view.get("state") if view else "unknown to the relay"
                raise NotWithin(
                    f"transaction {tx_id.hex()} was not executed within {layers} layers "
                    f"(relay: {state})"
                )
            await trio.sleep(self.layer_seconds / POLLS_PER_LAYER)

    async def _receipt_if_reachable(self, tx_id: bytes) -> Receipt | None:
        try:
            return await self.receipt(tx_id)
        except ClientError:  # the executor is down (a scenario may have killed it)
            return None

    async def _status_if_reachable(self, tx_id: bytes) -> dict[str, Any] | None:
        try:
            return await self.tx_status(tx_id)
        except ClientError:
            return None

    async def send(
        self, tx: Transaction, *, within_layers: int | None = None, check: bool = True
    ) -> Receipt:
        """Submit a signed transaction and wait for its receipt; with `check`, a receipt
        that is not SUCCESS raises TransactionFailed."""
        tx_id = await self.submit(tx)
        return checked(await self.wait_receipt(tx_id, within_layers), check)

    # --- accounts ------------------------------------------------------------------------

    def wallet(self, key: KeyPair) -> AsyncAccount:
        """The wallet account of `key` (spawned or not)."""
        wallet = template("wallet").address
        return AsyncAccount(self, key.wallet_address(wallet), wallet, _single(key))

    def account_of(
        self, address: AddressLike, template_address: bytes, sign: Signer
    ) -> AsyncAccount:
        """A handle on any account whose transactions `sign` can sign."""
        return AsyncAccount(self, self.address(address), template_address, sign)

    def template_address(self, name_or_address: str | bytes) -> bytes:
        """A built-in template's address by name ("wallet", "multisig", "token_mint",
        "token_wallet"), or an address as given."""
        if isinstance(name_or_address, bytes):
            return name_or_address
        if name_or_address in builtin_templates():
            return template(name_or_address).address
        return self.address(name_or_address)

    async def spawn(
        self,
        template_ref: str | bytes,
        blob: bytes,
        sign: Signer | KeyPair,
        *,
        funder: AsyncAccount | None = None,
        amount: int = 10**12,
        within_layers: int | None = None,
    ) -> AsyncAccount:
        """A new account of a template: `funder` (default: wallet 0) sends it `amount` to
        pay for its transactions, then it spawns itself signed by `sign` (a signing function,
        or the one key its template's `verify` wants)."""
        tpl = self.template_address(template_ref)
        address = spawn_address(tpl, blob)
        signer = _single(sign) if isinstance(sign, KeyPair) else sign
        account = AsyncAccount(self, address, tpl, signer)
        if amount:
            await (funder or self.wallets[0]).spend(address, amount, within_layers=within_layers)
        await account.send(
            Payload(selector("spawn"), blob),
            template=tpl,
            within_layers=within_layers,
        )
        return account

    async def new_wallet(
        self,
        key: KeyPair | None = None,
        *,
        funder: AsyncAccount | None = None,
        amount: int = 10**12,
        within_layers: int | None = None,
    ) -> AsyncAccount:
        """A freshly spawned wallet of `key` (a new random key by default)."""
        key = key or KeyPair.generate()
        return await self.spawn(
            "wallet",
            key.public_key,
            key,
            funder=funder,
            amount=amount,
            within_layers=within_layers,
        )

    async def new_multisig(
        self,
        required: int,
        keys: list[KeyPair],
        *,
        signers: list[int] | None = None,
        funder: AsyncAccount | None = None,
        amount: int = 10**12,
    ) -> AsyncAccount:
        """A spawned k-of-n multisig; its transactions are signed by the keys at indexes
        `signers` (default: the first `required`)."""
        chosen = signers if signers is not None else list(range(required))
        blob = methods.spawn_multisig(required, [k.public_key for k in keys]).input
        return await self.spawn(
            "multisig", blob, _multi({i: keys[i] for i in chosen}), funder=funder, amount=amount
        )


async def _hold(
    client: RpcClient, *, task_status: trio.TaskStatus[RpcClient] = trio.TASK_STATUS_IGNORED
) -> None:
    """Keep a connection open in the client's own nursery, whichever task first needed it
    (a nursery must be entered and left by one task)."""
    async with client:
        task_status.started(client)
        await trio.sleep_forever()


def _single(key: KeyPair) -> Signer:
    def sign(tx: Transaction, genesis_id: bytes) -> Transaction:
        return tx.sign(key, genesis_id)

    return sign


def _multi(keys: dict[int, KeyPair]) -> Signer:
    def sign(tx: Transaction, genesis_id: bytes) -> Transaction:
        return tx.sign_multisig(keys, genesis_id)

    return sign
