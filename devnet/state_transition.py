"""The Athena state transition: one transaction applied to a state view.

Pure: it reads and writes only through the `State` protocol (the in-memory host in tests,
a LevelDB-backed view in the executor) and returns a `Receipt`. The order of checks is the
protocol's, and each check that fails before the fee is charged rejects the transaction
with nothing changed:

decode → principal exists (or a self-spawn derives it) → gas (price > 0, limit, max fee)
→ template `verify` (these four are `precheck`, which a relay runs too) → nonce → balance
covers gas_limit × gas_price → charge → run the method with what verify left → refund
unused gas → split the fee → nonce + 1, even when the method failed (whose own changes are
rolled back).
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

import blake3

from athena_vm import ExecutionContext, Host, StatusCode
from athena_vm.address import spawn_address
from athena_vm.payload import encode_method_call, selector, wrap_call
from athena_vm.scale import encode_bytes
from athena_vm.vm import ExecutionResult
from devnet.errors import TransactionError, TransactionRejected, TransactionTooLargeError
from devnet.transaction import MAX_TX_SIZE, Transaction, decode_transaction

VERIFY = selector("verify")
SPAWN = selector("spawn")
BPS = 10_000
MAX_BALANCE = 2**64 - 1


class State(Host, Protocol):
    """What the transition needs of a state view beyond the VM's host functions."""

    def nonce(self, address: bytes) -> int: ...

    def set_nonce(self, address: bytes, nonce: int) -> None: ...

    def set_balance(self, address: bytes, balance: int) -> None: ...

    def account_template(self, address: bytes) -> bytes | None: ...

    def account_state(self, address: bytes) -> bytes: ...

    def template_code(self, template: bytes) -> bytes | None: ...

    def run(self, context: ExecutionContext, payload: bytes, gas: int) -> ExecutionResult: ...

    def snapshot(self) -> int: ...

    def rollback(self, mark: int) -> None: ...

    def touched_since(self, mark: int) -> set[bytes]: ...


@dataclass(frozen=True)
class TransitionConfig:
    genesis_id: bytes
    #: The executor's Athena account, credited with its share of every fee (None: burnt).
    executor: bytes | None = None
    #: The executor's share of each fee in basis points; the bundling relay gets the rest.
    executor_share_bps: int = 2_000
    max_tx_size: int = MAX_TX_SIZE
    max_gas_limit: int = 100_000_000


class Receipt(NamedTuple):
    """What applying one transaction did.

    Immutable. A named tuple rather than a frozen dataclass: one is built per transaction,
    and a frozen dataclass sets each of its 13 fields through `object.__setattr__`, which
    made building it cost about a tenth of the state transition outside the VM.
    """

    tx_id: bytes
    status: StatusCode
    reason: str | None = None
    principal: bytes | None = None
    nonce: int | None = None
    gas_used: int = 0
    fee: int = 0
    relay_fee: int = 0
    executor_fee: int = 0
    burnt: int = 0
    output: bytes = b""
    logs: tuple[str, ...] = ()
    touched: tuple[bytes, ...] = ()

    @property
    def rejected(self) -> bool:
        """Refused before charging: not executed, nothing changed, nonce not used."""
        return self.status == StatusCode.REJECTED

    @property
    def ok(self) -> bool:
        return self.status == StatusCode.SUCCESS


class Checked(NamedTuple):
    """A transaction that passed every check made before charging but nonce and balance.

    Carries what execution needs next: the principal's template and state blob (for a
    self-spawn, the ones the spawn will create) and the gas `verify` used. A named tuple
    for the reason `Receipt` is one: one is built per transaction.
    """

    tx: Transaction
    template: bytes
    state: bytes
    verify_gas: int


def _reject(tx_id: bytes, reason: str, tx: Transaction | None = None) -> Receipt:
    return Receipt(
        tx_id,
        StatusCode.REJECTED,
        reason,
        principal=tx.principal if tx else None,
        nonce=tx.nonce if tx else None,
    )


def precheck(state: State, raw: bytes, config: TransitionConfig) -> Checked:
    """The checks before charging that need no nonce or balance: decode, principal (or
    self-spawn), gas, template `verify`. Raises `TransactionRejected` with the reason a
    receipt would give; changes nothing. A relay runs it on a state holding just the
    principal's account to admit transactions with the executor's own code.
    """
    try:
        tx = decode_transaction(raw, config.max_tx_size)
    except TransactionError as exc:
        raise TransactionRejected(str(exc)) from None
    return _precheck(state, tx, config)


def _precheck(state: State, tx: Transaction, config: TransitionConfig) -> Checked:
    template, account_state = _principal(state, tx)
    _check_gas(tx, config)
    verify_gas = _verify(state, tx, template, account_state, config)
    return Checked(tx, template, account_state, verify_gas)


def apply_transaction(
    state: State, raw: bytes, config: TransitionConfig, relay: bytes | None = None
) -> Receipt:
    """Apply one encoded transaction; `relay` is the bundler credited with its fee share."""
    try:
        tx = decode_transaction(raw, config.max_tx_size)
    except TransactionError as exc:
        return _reject(blake3.blake3(raw).digest(), str(exc))
    return apply_decoded(state, tx, config, relay)


def apply_decoded(
    state: State, tx: Transaction, config: TransitionConfig, relay: bytes | None = None
) -> Receipt:
    """`apply_transaction` of a transaction already decoded (by `decode_transaction`).

    A block's transactions are decoded once by the block rule; decoding them again here
    would cost as much as the rest of the transition outside the VM. Decoding is the same
    function for both, so the one thing left to check is `config`'s size limit, which may
    be tighter than the limit they were decoded under: the receipt is the same either way.
    """
    size = len(tx.encode())
    if size > config.max_tx_size:
        return _reject(tx.id, str(TransactionTooLargeError(size, config.max_tx_size)))
    try:
        checked = _precheck(state, tx, config)
        _check_nonce_and_balance(state, tx)
    except TransactionRejected as exc:
        return _reject(tx.id, exc.reason, tx)
    return _execute(state, checked, config, relay)


def _check_gas(tx: Transaction, config: TransitionConfig) -> None:
    if tx.gas_price <= 0:
        raise TransactionRejected("gas price must be above 0")
    if tx.gas_limit > config.max_gas_limit:
        raise TransactionRejected(
            f"gas limit {tx.gas_limit} exceeds the maximum {config.max_gas_limit}"
        )
    if tx.max_fee > MAX_BALANCE:
        raise TransactionRejected("gas_limit × gas_price overflows a u64 balance")


def _principal(state: State, tx: Transaction) -> tuple[bytes, bytes]:
    """The principal's template and state blob, or those a self-spawn will create."""
    existing = state.account_template(tx.principal)
    if tx.template is None:
        if existing is None:
            raise TransactionRejected(
                f"principal 0x{tx.principal.hex()} does not exist: spawn it first "
                "(a self-spawn names its template)"
            )
        return existing, state.account_state(tx.principal)
    if existing is not None:
        raise TransactionRejected(f"principal 0x{tx.principal.hex()} is already spawned")
    if state.template_code(tx.template) is None:
        raise TransactionRejected(f"unknown template 0x{tx.template.hex()}")
    if tx.payload.selector != SPAWN:
        raise TransactionRejected("a transaction naming a template must call spawn")
    derived = spawn_address(tx.template, tx.payload.input)
    if derived != tx.principal:
        raise TransactionRejected(
            f"principal 0x{tx.principal.hex()} is not the spawn address 0x{derived.hex()} "
            "of the template and spawn arguments"
        )
    return tx.template, tx.payload.input


def _context(tx: Transaction, template: bytes) -> ExecutionContext:
    return _principal_context(tx.principal, template)


@lru_cache(maxsize=1024)
def _principal_context(principal: bytes, template: bytes) -> ExecutionContext:
    """The frame a transaction's principal runs in, for `verify` and for the method.

    Shared rather than built twice per transaction: a context is immutable.
    """
    return ExecutionContext(
        callee=principal,
        callee_template=template,
        caller=principal,
        caller_template=template,
    )


def _verify(
    state: State, tx: Transaction, template: bytes, account_state: bytes, config: TransitionConfig
) -> int:
    """Run the template's verify; returns the gas it used. Leaves no trace in the state."""
    args = encode_bytes(tx.signing_bytes(config.genesis_id)) + tx.signature
    payload = encode_method_call(account_state, VERIFY, args)
    mark = state.snapshot()
    result = state.run(_context(tx, template), payload, tx.gas_limit)
    state.rollback(mark)
    if not result.ok:
        raise TransactionRejected(
            f"verify failed: {result.status.name} {result.reason or ''}".strip()
        )
    if result.output != b"\x01":
        raise TransactionRejected("invalid signature: the template's verify refused it")
    return result.gas_used


def _check_nonce_and_balance(state: State, tx: Transaction) -> None:
    expected = state.nonce(tx.principal)
    if tx.nonce < expected:
        raise TransactionRejected(f"stale nonce {tx.nonce}: next nonce is {expected}")
    if tx.nonce > expected:
        raise TransactionRejected(f"nonce gap: {tx.nonce} given, next nonce is {expected}")
    balance = state.get_balance(tx.principal)
    if balance < tx.max_fee:
        raise TransactionRejected(
            f"balance {balance} does not cover gas_limit × gas_price = {tx.max_fee}"
        )


def _credit(state: State, address: bytes | None, amount: int) -> int:
    """Pay `amount` to `address`; returns what could not be paid and is burnt."""
    if address is None or amount == 0:
        return amount
    balance = state.get_balance(address)
    if balance + amount > MAX_BALANCE:
        return amount
    state.set_balance(address, balance + amount)
    return 0


def _execute(
    state: State, checked: Checked, config: TransitionConfig, relay: bytes | None
) -> Receipt:
    tx, template, account_state, verify_gas = (
        checked.tx,
        checked.template,
        checked.state,
        checked.verify_gas,
    )
    mark = state.snapshot()
    state.set_balance(tx.principal, state.get_balance(tx.principal) - tx.max_fee)
    method_mark = state.snapshot()
    payload = wrap_call(account_state, tx.payload_bytes)
    result = state.run(_context(tx, template), payload, tx.gas_limit - verify_gas)
    status, reason = result.status, result.reason
    if result.ok and tx.template is not None and state.account_template(tx.principal) is None:
        status, reason = StatusCode.FAILURE, "spawn did not create the principal"
    if status != StatusCode.SUCCESS:
        state.rollback(method_mark)
    method_gas = result.gas_used if status == StatusCode.SUCCESS else tx.gas_limit - verify_gas
    gas_used = verify_gas + method_gas
    fee = gas_used * tx.gas_price
    state.set_balance(tx.principal, state.get_balance(tx.principal) + tx.max_fee - fee)
    executor_share = fee * config.executor_share_bps // BPS
    relay_share = fee - executor_share
    # The receipt reports what was paid: a share with nowhere to go is burnt instead, so
    # relay_fee + executor_fee + burnt == fee.
    executor_fee = executor_share - _credit(state, config.executor, executor_share)
    relay_fee = relay_share - _credit(state, relay, relay_share)
    burnt = fee - executor_fee - relay_fee
    state.set_nonce(tx.principal, tx.nonce + 1)
    ok = status == StatusCode.SUCCESS
    return Receipt(
        tx_id=tx.id,
        status=status,
        reason=reason,
        principal=tx.principal,
        nonce=tx.nonce,
        gas_used=gas_used,
        fee=fee,
        relay_fee=relay_fee,
        executor_fee=executor_fee,
        burnt=burnt,
        output=result.output if ok else b"",
        logs=result.logs,
        touched=tuple(sorted(state.touched_since(mark))),
    )
