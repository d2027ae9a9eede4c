"""`AsyncAccount`: an Athena account the client can sign for — a wallet, a multisig, a token
wallet — with the methods the built-in templates share (spend, proxy call, deploy).

Nonces are tracked locally, so several transactions can be in flight at once, and re-read
from the executor whenever the relay says the local count is off.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from athena_vm.address import template_address
from athena_vm.payload import Payload, selector
from devnet import methods
from devnet.client.errors import ClientError, TransactionRejected
from devnet.client.records import Account, Receipt, checked
from devnet.transaction import Transaction

if TYPE_CHECKING:
    from devnet.client.network import AddressLike, AsyncDevnet

#: Signs a transaction for the network of `genesis_id`.
Signer = Callable[[Transaction, bytes], Transaction]

DEFAULT_GAS_LIMIT = 1_000_000
DEPLOY_GAS_LIMIT = 20_000_000
#: Relay refusals that mean the local nonce is off; the account re-reads it and retries.
#: (`in_flight` and `replacement_underpriced`: the nonce is taken by a transaction another
#: process sent, e.g. an earlier `devnet wallet spend --no-wait`.)
NONCE_KINDS = ("stale_nonce", "nonce_too_high", "in_flight", "replacement_underpriced")
NONCE_RETRIES = 5


@dataclass(frozen=True)
class Deployment:
    template: bytes
    receipt: Receipt


@dataclass(eq=False)
class AsyncAccount:
    net: "AsyncDevnet"
    address: bytes
    template: bytes
    sign: Signer = field(repr=False)
    _next_nonce: int | None = field(default=None, repr=False)
    _lock: trio.Lock = field(default_factory=trio.Lock, repr=False)

    @property
    def bech32(self) -> str:
        return self.net.bech32(self.address)

    def __str__(self) -> str:
        return self.bech32

    # --- reading -------------------------------------------------------------------------

    async def info(self) -> Account:
        return await self.net.account(self.address)

    async def balance(self) -> int:
        return await self.net.balance(self.address)

    async def nonce(self) -> int:
        """The next nonce this account will use."""
        if self._next_nonce is None:
            self._next_nonce = await self.net.nonce(self.address)
        return self._next_nonce

    # --- sending -------------------------------------------------------------------------

    async def submit(
        self,
        payload: Payload,
        *,
        template: bytes | None = None,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        gas_price: int = 1,
    ) -> bytes:
        """Sign `payload` as this account's next transaction and hand it to the relay;
        returns the transaction id without waiting for execution."""
        async with self._lock:
            for attempt in range(NONCE_RETRIES):
                nonce = await self.nonce()
                tx = Transaction(self.address, nonce, gas_limit, gas_price, payload, template)
                signed = self.sign(tx, self.net.genesis_id)
                try:
                    tx_id = await self.net.submit(signed)
                except TransactionRejected as exc:
                    if exc.kind not in NONCE_KINDS or attempt == NONCE_RETRIES - 1:
                        raise
                    self._next_nonce = await self._recount(exc.kind, nonce)
                    continue
                self._next_nonce = nonce + 1
                return tx_id
        raise ClientError("unreachable")  # pragma: no cover

    async def _recount(self, kind: str, tried: int) -> int:
        """The nonce to try next: the executor's, or past `tried` if that one is taken by a
        transaction still in the relay."""
        executed = await self.net.nonce(self.address)
        return executed if kind == "nonce_too_high" else max(executed, tried + 1)

    async def send(
        self,
        payload: Payload,
        *,
        template: bytes | None = None,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        gas_price: int = 1,
        within_layers: int | None = None,
        check: bool = True,
    ) -> Receipt:
        """Submit and wait for the receipt (TransactionFailed if not SUCCESS and `check`)."""
        tx_id = await self.submit(
            payload, template=template, gas_limit=gas_limit, gas_price=gas_price
        )
        return checked(await self.net.wait_receipt(tx_id, within_layers), check)

    async def spend(self, to: "AddressLike", amount: int, **options: Any) -> Receipt:
        """Send `amount` coins to `to`; the receipt once executed."""
        return await self.send(methods.spend(self.net.address(to), amount), **options)

    async def submit_spend(self, to: "AddressLike", amount: int, **options: Any) -> bytes:
        """Send coins without waiting: the transaction id (see `AsyncDevnet.wait_receipt`)."""
        return await self.submit(methods.spend(self.net.address(to), amount), **options)

    async def call(
        self,
        to: "AddressLike",
        method: str | None,
        args: bytes | None = b"",
        amount: int = 0,
        **options: Any,
    ) -> Receipt:
        """Call `to`.`method`(args) through this account (its template's `proxy`), sending
        `amount` coins along; the callee's output is the receipt's output."""
        payload = methods.proxy(self.net.address(to), method, args, amount)
        return await self.send(payload, **options)

    async def invoke(self, method: str, args: bytes = b"", **options: Any) -> Receipt:
        """Call a method of this account's own template (e.g. a token wallet's
        `send_token`), as this account's transaction."""
        return await self.send(Payload(selector(method), args), **options)

    async def deploy(self, code: bytes | Path, **options: Any) -> Deployment:
        """Deploy an ELF program as a new template; its address and the receipt."""
        raw = Path(code).read_bytes() if isinstance(code, Path) else code
        options.setdefault("gas_limit", DEPLOY_GAS_LIMIT)
        receipt = await self.send(methods.deploy(raw), **options)
        address = template_address(raw)
        if receipt.output and receipt.output != address:
            raise ClientError(
                f"deploy returned 0x{receipt.output.hex()}, expected 0x{address.hex()}"
            )
        return Deployment(address, receipt)
