"""Admission checks that need the VM, run with the executor's own code.

The relay holds no Athena state. For each submission it fetches the principal's account
(and its template's code) from the executor and runs the state transition's `precheck`
(decode, principal or self-spawn, gas, template `verify`) on an in-memory host holding just
that account, so it refuses exactly what the executor would refuse for those reasons, with
the same words. It then asks the template's `max_spend` how many coins the call can move, so
the pool can check the balance against every pending transaction of the principal.
Nonces and balances across pending transactions are the pool's rules (`relay.pool`).
"""

from dataclasses import dataclass
from typing import Any

from athena_vm import ExecutionContext, ExecutionPayload, Payload
from athena_vm.in_memory_host import Account, InMemoryHost
from athena_vm.payload import selector
from devnet.errors import TransactionError, TransactionRejected
from devnet.state_transition import Checked, TransitionConfig, precheck
from devnet.transaction import Transaction, decode_transaction
from relay.pool import AccountView, PoolRejection, PoolTx
from relay.shortcut import WalletShortcut

#: Refusal kinds of the checks made before any executor query (see `screen`).
OVERSIZED = "oversized"
MALFORMED = "malformed"
UNDERPRICED = "underpriced"

MAX_SPEND = selector("max_spend")
#: Gas for one `max_spend` call: the relay's own cost, not the user's. The built-in
#: templates need a few hundred; a template that needs more counts as spending nothing.
MAX_SPEND_GAS = 200_000
U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Principal:
    """What the executor says about a principal, and its template's code."""

    account: AccountView
    template: bytes | None
    state: bytes
    exists: bool

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Principal":
        """From the executor's `get_account` reply."""
        return cls(
            AccountView(int(view["nonce"]), int(view["balance"])),
            view["template"],
            bytes(view["state"]),
            bool(view["exists"]),
        )


def screen(raw: bytes, max_size: int, min_gas_price: int) -> Transaction:
    """The checks that need only the bytes: size, decoding, the relay's minimum gas price.
    Raises `PoolRejection` (oversized, malformed, underpriced)."""
    if len(raw) > max_size:
        raise PoolRejection(
            OVERSIZED, f"transaction of {len(raw)} bytes exceeds the {max_size}-byte limit"
        )
    try:
        tx = decode_transaction(raw, max_size)
    except TransactionError as exc:
        raise PoolRejection(MALFORMED, str(exc)) from None
    if tx.gas_price < min_gas_price:
        raise PoolRejection(
            UNDERPRICED, f"gas price {tx.gas_price} is below this relay's minimum {min_gas_price}"
        )
    return tx


def host_for(address: bytes, principal: Principal, templates: dict[bytes, bytes]) -> InMemoryHost:
    """An in-memory state holding just the principal's account and the given templates."""
    host = InMemoryHost()
    host.templates.update(templates)
    if principal.exists:
        host.accounts[address] = Account(
            principal.account.balance,
            principal.account.nonce,
            principal.template,
            principal.state,
        )
    return host


def max_spend(host: InMemoryHost, checked: Checked) -> int:
    """What the template's `max_spend` says the transaction's call can move (0 if the
    template does not answer: its balance check then covers only the fee)."""
    tx = checked.tx
    payload = ExecutionPayload(checked.state, Payload(MAX_SPEND, tx.payload.encode())).encode()
    context = ExecutionContext(
        callee=tx.principal,
        callee_template=checked.template,
        caller=tx.principal,
        caller_template=checked.template,
    )
    mark = host.snapshot()
    result = host.run(context, payload, MAX_SPEND_GAS)
    host.rollback(mark)
    if not result.ok or len(result.output) != 8:
        return 0
    return int.from_bytes(result.output, "little")


def check(
    raw: bytes,
    address: bytes,
    principal: Principal,
    templates: dict[bytes, bytes],
    config: TransitionConfig,
    shortcut: WalletShortcut | None = None,
    tx: Transaction | None = None,
) -> PoolTx:
    """Run the executor's pre-charge checks and `max_spend`; the transaction as the pool
    keeps it. Raises `TransactionRejected` with the executor's reason.

    With a `shortcut` (and `tx`, the decoded `raw`), a built-in wallet's transaction the
    VM would admit is admitted without running it (see `relay.shortcut`); every other
    transaction, and a sample of those, runs in the VM.
    """
    fast = None
    if shortcut is not None and tx is not None:
        fast = shortcut.admit(tx, principal.template, principal.state, config)
        if fast is not None and not shortcut.audit_due():
            return fast
    try:
        pooled, checked = _vm_check(raw, address, principal, templates, config)
    except TransactionRejected as exc:
        if fast is not None and shortcut is not None:
            shortcut.disagree(fast.raw, fast, exc.reason)
        raise
    if shortcut is not None:
        if fast is not None and fast != pooled:
            shortcut.disagree(fast.raw, fast, pooled)
        shortcut.learn(checked, config)
    return pooled


def _vm_check(
    raw: bytes,
    address: bytes,
    principal: Principal,
    templates: dict[bytes, bytes],
    config: TransitionConfig,
) -> tuple[PoolTx, Checked]:
    host = host_for(address, principal, templates)
    checked = precheck(host, raw, config)
    tx = checked.tx
    cost = min(U64_MAX, tx.max_fee + max_spend(host, checked))
    return PoolTx(tx.id, raw, tx.principal, tx.nonce, tx.gas_price, tx.gas_limit, cost), checked
