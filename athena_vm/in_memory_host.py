"""A complete host held in memory: accounts, storage, templates, calls with rollback.

Tests and the CLI run programs against it; the executor implements the same `Host` protocol
over LevelDB. Every change is recorded in a journal so a failed call frame can be undone.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The address functions are re-exported: tools import them from here.
from athena_vm.address import generate_address as generate_address
from athena_vm.address import spawn_address as spawn_address
from athena_vm.address import template_address as template_address
from athena_vm.errors import Fault, ProgramError
from athena_vm.host import (
    MAX_CALL_DEPTH,
    CallResult,
    ExecutionContext,
    Message,
    StorageStatus,
    TxContext,
)
from athena_vm.payload import wrap_call
from athena_vm.program import Program, cached_program
from athena_vm.status import StatusCode
from athena_vm.vm import ExecutionResult, execute

ZERO32 = bytes(32)


@dataclass(slots=True)
class Account:
    balance: int = 0
    nonce: int = 0
    template: bytes | None = None
    state: bytes = b""
    storage: dict[bytes, bytes] = field(default_factory=dict)


#: How a journal entry is undone: `restore(target, arg)` (module functions, not closures:
#: a layer journals thousands of changes, and a closure costs four objects to build and to
#: keep alive until the layer's commit, where a plain tuple costs one).
Restore = Callable[[Any, Any], None]
#: (address touched, restore, target, arg), newest last.
JournalEntry = tuple[bytes, Restore, Any, Any]
#: The largest balance an account can hold (the VM reports balances as u64).
MAX_BALANCE = 2**64 - 1
#: Programs a host keeps by template address (templates in use are few; programs are big).
_PROGRAMS_KEPT = 64


@dataclass
class InMemoryHost:
    accounts: dict[bytes, Account] = field(default_factory=dict)
    templates: dict[bytes, bytes] = field(default_factory=dict)
    tx_context: TxContext = field(default_factory=TxContext)
    block_hashes: dict[int, bytes] = field(default_factory=dict)
    #: Every change, newest last: (address touched, restore, target, arg).
    journal: list[JournalEntry] = field(default_factory=list)
    #: template address -> (the code loaded, its Program): see `_program`.
    _programs: dict[bytes, tuple[bytes, Program]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    # --- set-up helpers for tests and the CLI -------------------------------------------

    def account(self, address: bytes) -> Account:
        """The account at `address`, created empty (and journaled) if missing."""
        acct = self.accounts.get(address)
        if acct is None:
            acct = self.accounts[address] = Account()
            self.journal.append((address, _forget, self.accounts, address))
        return acct

    def add_template(self, code: bytes) -> bytes:
        address = template_address(code)
        if address not in self.templates:
            self.templates[address] = code
            self.journal.append((address, _forget, self.templates, address))
        return address

    def set_balance(self, address: bytes, balance: int) -> None:
        if not 0 <= balance <= MAX_BALANCE:
            raise ValueError(f"balance {balance} out of the u64 range")
        acct = self.account(address)
        self.journal.append((address, _restore_balance, acct, acct.balance))
        acct.balance = balance

    def snapshot(self) -> int:
        return len(self.journal)

    def rollback(self, mark: int) -> None:
        journal = self.journal
        while len(journal) > mark:
            _, restore, target, arg = journal.pop()
            restore(target, arg)

    def touched_since(self, mark: int) -> set[bytes]:
        """Addresses changed since `snapshot()` returned `mark`."""
        return {entry[0] for entry in self.journal[mark:]}

    # --- what the state transition reads and writes besides the Host protocol ---------

    def nonce(self, address: bytes) -> int:
        acct = self.accounts.get(address)
        return acct.nonce if acct else 0

    def set_nonce(self, address: bytes, nonce: int) -> None:
        acct = self.account(address)
        self.journal.append((address, _restore_nonce, acct, acct.nonce))
        acct.nonce = nonce

    def account_template(self, address: bytes) -> bytes | None:
        acct = self.accounts.get(address)
        return acct.template if acct else None

    def account_state(self, address: bytes) -> bytes:
        acct = self.accounts.get(address)
        return acct.state if acct else b""

    def template_code(self, template: bytes) -> bytes | None:
        return self.templates.get(template)

    # --- the Host protocol --------------------------------------------------------------

    def account_exists(self, address: bytes) -> bool:
        return address in self.accounts

    def get_storage(self, address: bytes, key: bytes) -> bytes:
        acct = self.accounts.get(address)
        return acct.storage.get(key, ZERO32) if acct else ZERO32

    def set_storage(self, address: bytes, key: bytes, value: bytes) -> StorageStatus:
        storage = self.account(address).storage
        old = storage.get(key)
        if value == ZERO32:
            storage.pop(key, None)
        else:
            storage[key] = value
        self.journal.append((address, _restore_slot, storage, (key, old)))
        current = old or ZERO32
        if current == value:
            return StorageStatus.ASSIGNED
        if current == ZERO32:
            return StorageStatus.ADDED
        return StorageStatus.DELETED if value == ZERO32 else StorageStatus.MODIFIED

    def get_balance(self, address: bytes) -> int:
        acct = self.accounts.get(address)
        return acct.balance if acct else 0

    def transfer(self, sender: bytes, recipient: bytes, amount: int) -> bool:
        """Move coins; False (and nothing moved) if the sender lacks them."""
        if self.get_balance(sender) < amount:
            return False
        if self.get_balance(recipient) + amount > MAX_BALANCE and sender != recipient:
            return False
        if amount and sender != recipient:
            self.set_balance(sender, self.get_balance(sender) - amount)
            self.set_balance(recipient, self.get_balance(recipient) + amount)
        return True

    def call(self, message: Message) -> CallResult:
        if message.depth > MAX_CALL_DEPTH:
            return CallResult(StatusCode.CALL_DEPTH_EXCEEDED, reason=f"call depth {message.depth}")
        mark = self.snapshot()
        if not self.transfer(message.sender, message.recipient, message.value):
            return CallResult(
                StatusCode.INSUFFICIENT_BALANCE,
                reason=f"balance {self.get_balance(message.sender)} < {message.value}",
            )
        acct = self.accounts.get(message.recipient)
        if not message.input or acct is None or acct.template is None:
            return CallResult(StatusCode.SUCCESS, gas_left=message.gas)
        context = ExecutionContext(
            callee=message.recipient,
            callee_template=acct.template,
            caller=message.sender,
            caller_template=message.sender_template,
            received=message.value,
            depth=message.depth,
        )
        result = self.run(context, wrap_call(acct.state, message.input), message.gas)
        if not result.ok:
            self.rollback(mark)
        return CallResult(result.status, result.output, result.gas_left, result.reason)

    def run(self, context: ExecutionContext, payload: bytes, gas: int) -> ExecutionResult:
        """Execute the code of `context.callee_template` with this host."""
        code = self.templates.get(context.callee_template)
        if code is None:
            return ExecutionResult(
                StatusCode.FAILURE,
                gas,
                0,
                reason=f"no template at 0x{context.callee_template.hex()}",
            )
        try:
            program = self._program(context.callee_template, code)
        except ProgramError as exc:
            return ExecutionResult(StatusCode.FAILURE, gas, 0, reason=f"bad template: {exc}")
        return execute(program, self, context, payload, gas)

    def _program(self, template: bytes, code: bytes) -> Program:
        """The loaded program of `code`, the code of `template`.

        `cached_program` hashes the whole code to find its entry, which costs as much as a
        short method's run, twice per transaction. This cache keeps the code object each
        program came from: seeing that very object again (a state map hands out the object
        it holds) means the same code without hashing it; any other object is looked up
        through `cached_program` again.
        """
        cached = self._programs.get(template)
        if cached is not None and cached[0] is code:
            return cached[1]
        program = cached_program(code)
        if len(self._programs) >= _PROGRAMS_KEPT:
            self._programs.pop(next(iter(self._programs)))
        self._programs[template] = (code, program)
        return program

    def spawn(self, template: bytes, blob: bytes) -> bytes:
        address = spawn_address(template, blob)
        acct = self.account(address)
        self.journal.append((address, _restore_code, acct, (acct.template, acct.state)))
        acct.template, acct.state = template, blob
        return address

    def deploy(self, code: bytes) -> bytes:
        try:
            cached_program(code)
        except ProgramError as exc:
            raise Fault(StatusCode.FAILURE, f"deploy of invalid code: {exc}") from None
        return self.add_template(code)

    def get_tx_context(self) -> TxContext:
        return self.tx_context

    def get_block_hash(self, block_height: int) -> bytes:
        return self.block_hashes.get(block_height, ZERO32)


def _forget(mapping: dict[bytes, Any], key: bytes) -> None:
    mapping.pop(key, None)


def _restore_balance(acct: Account, old: int) -> None:
    acct.balance = old


def _restore_nonce(acct: Account, old: int) -> None:
    acct.nonce = old


def _restore_slot(storage: dict[bytes, bytes], slot: tuple[bytes, bytes | None]) -> None:
    key, old = slot
    if old is None:
        storage.pop(key, None)
    else:
        storage[key] = old


def _restore_code(acct: Account, old: tuple[bytes | None, bytes]) -> None:
    acct.template, acct.state = old
