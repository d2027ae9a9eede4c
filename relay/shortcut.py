"""Admission of the built-in wallet's transactions without the VM, when the VM would admit.

Admission runs the principal's template twice in the VM (`verify`, then `max_spend`): that
was about three quarters of the relay's CPU under load, more per transaction than anything
else in the relay. Nearly all of a relay's traffic is plain wallets, and what the built-in
wallet's two methods compute is small and fixed (`templates/template.h`):

- `verify(tx, sig)`: true iff the input holds exactly one 64-byte signature after the
  transaction bytes and it is the owner's (the 32-byte state) ed25519 signature of them;
- `max_spend(payload)`: a spend's amount (u64 LE after the 24-byte recipient), a proxy's
  amount (its last 8 bytes), 0 for anything else.

The shortcut computes both natively, but only ever *admits*: it applies when the principal
is the built-in wallet (its template address is the hash of the committed code) with a
32-byte state, the transaction is no self-spawn, its gas fields pass the executor's checks,
its 64-byte signature verifies, and its gas limit covers what `verify` used in the VM on an
earlier transaction of the same length (learned here, from the VM path: once a signature
is valid, the wallet's path through `verify` depends only on the lengths). Everything
else — an invalid signature included — goes through the VM, so every refusal keeps the
executor's own words.

It also checks itself: every `AUDIT_EVERY`-th transaction it would admit goes through the
VM as well, and on the first disagreement the shortcut switches itself off for good and
logs the difference (it never changes a refusal into an admission: a disagreement means the
VM path alone decides from then on).
"""

from dataclasses import dataclass, field

from athena_vm.payload import selector
from devnet.builtin_templates import template
from devnet.keys import verify
from devnet.log import get_logger
from devnet.state_transition import MAX_BALANCE, Checked, TransitionConfig
from devnet.transaction import Transaction
from relay.pool import PoolTx

SPEND = selector("spend")
PROXY = selector("proxy")
#: The wallet's own bound on a transaction it reads (MAX_TX_BYTES in template.h).
MAX_TX_BYTES = 128 * 1024
OWNER_BYTES = 32
SIGNATURE_BYTES = 64
U64_MAX = 2**64 - 1
AUDIT_EVERY = 256


def wallet_max_spend(tx: Transaction) -> int:
    """What the built-in wallet's `max_spend` answers for the transaction's payload."""
    payload = tx.payload
    data = payload.input
    if payload.selector is None or len(data) > MAX_TX_BYTES:
        return 0
    if payload.selector == SPEND and len(data) >= 32:
        return int.from_bytes(data[24:32], "little")
    if payload.selector == PROXY and len(data) >= 24 + 1 + 1 + 8:
        return int.from_bytes(data[-8:], "little")
    return 0


@dataclass
class WalletShortcut:
    """The shortcut for one relay: the gas `verify` needs per signed length, as learned."""

    wallet: bytes = field(default_factory=lambda: template("wallet").address)
    #: len(genesis id ‖ unsigned transaction) -> gas the wallet's `verify` used on it
    verify_gas: dict[int, int] = field(default_factory=dict)
    enabled: bool = True
    taken: int = 0

    def admit(
        self, tx: Transaction, template: bytes | None, state: bytes, config: TransitionConfig
    ) -> PoolTx | None:
        """The pooled transaction if the shortcut applies, else None (use the VM)."""
        if not self.enabled or template != self.wallet or tx.template is not None:
            return None
        if len(state) != OWNER_BYTES or len(tx.signature) != SIGNATURE_BYTES:
            return None
        if tx.gas_price <= 0 or tx.gas_limit > config.max_gas_limit or tx.max_fee > MAX_BALANCE:
            return None
        message = tx.signing_bytes(config.genesis_id)
        needed = self.verify_gas.get(len(message))
        if needed is None or tx.gas_limit < needed:
            return None
        if not verify(state, message, tx.signature):
            return None
        cost = min(U64_MAX, tx.max_fee + wallet_max_spend(tx))
        return PoolTx(tx.id, tx.encode(), tx.principal, tx.nonce, tx.gas_price, tx.gas_limit, cost)

    def audit_due(self) -> bool:
        """Whether this admission should go through the VM too (every AUDIT_EVERY-th)."""
        self.taken += 1
        return self.taken % AUDIT_EVERY == 0

    def learn(self, checked: Checked, config: TransitionConfig) -> None:
        """The VM admitted `checked`: remember what the wallet's `verify` used."""
        tx = checked.tx
        if checked.template == self.wallet and tx.template is None:
            length = len(tx.signing_bytes(config.genesis_id))
            self.verify_gas.setdefault(length, checked.verify_gas)

    def disagree(self, raw: bytes, fast: PoolTx, vm: PoolTx | str) -> None:
        """The VM decided otherwise than the shortcut: switch it off and say why."""
        self.enabled = False
        get_logger("relay").error(
            "wallet shortcut disagrees with the VM; using the VM only from now on",
            tx=raw.hex(),
            shortcut_cost=fast.cost,
            vm=vm if isinstance(vm, str) else vm.cost,
        )
