"""Every Athena syscall exercised from a C guest (tests/guests/sys_*.c).

The guests read their arguments from the input stream and report through fd3, so each test
states the syscall's effect on the result, the host, or both.
"""

import struct
from collections.abc import Callable

import blake3
import nacl.signing
import pytest

from athena_vm import ExecutionResult, Message, Payload, StatusCode, StorageStatus, selector
from athena_vm.host import CallResult
from athena_vm.in_memory_host import InMemoryHost, template_address
from athena_vm.syscalls import ED25519_VERIFY_GAS, MAX_TEMPLATE_BYTES
from athena_vm.vm import GAS_PER_INSTRUCTION
from tests.vmrun import run_code

Guest = Callable[[str], bytes]

ZERO24 = bytes(24)
ZERO32 = bytes(32)
KEY = b"k" * 32
V1 = b"\x01" * 32
V2 = b"\x02" * 32


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def unpack_u32s(data: bytes, count: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{count}I", data)


def payload(method: str, args: bytes = b"") -> bytes:
    """The SCALE Payload a guest passes to HOST_CALL."""
    return Payload(selector(method), args).encode()


def install(host: InMemoryHost, code: bytes, state: bytes = b"", balance: int = 0) -> bytes:
    """A new account running `code`; returns its address."""
    address = host.spawn(host.add_template(code), state)
    if balance:
        host.set_balance(address, balance)
    return address


def call_args(address: bytes, call_payload: bytes, amount: int = 0, capacity: int = 64) -> bytes:
    """Input of sys_caller's `call`: {address, amount u64, capacity u32, len u32, payload}."""
    return address + struct.pack("<QII", amount, capacity, len(call_payload)) + call_payload


def call_reply(result: ExecutionResult, capacity: int) -> tuple[int, bytes]:
    """sys_caller's output: (bytes copied, the output buffer through capacity + 8)."""
    assert result.ok, result.reason
    (copied,) = unpack_u32s(result.output, 1)
    out = result.output[4:]
    assert len(out) == capacity + 8
    return copied, out


def assert_failed(result: ExecutionResult, status: StatusCode, reason: str = "") -> None:
    assert result.status == status, result.reason
    assert result.gas_left == 0
    assert result.output == b""
    assert result.reason is not None and reason in result.reason


# --- WRITE ---------------------------------------------------------------------------------


def test_write_fd1_fd2_log_lines_and_partial_last_lines(guest: Guest) -> None:
    result, _, _ = run_code(guest("sys_io"), method="logs")
    assert result.ok, result.reason
    assert result.logs == (
        "hello",
        "warn: a",
        "warn: b",
        "partial",
        "bad \ufffd utf-8",
        # Unterminated lines are kept at the end, fd1's before fd2's.
        "tail",
        "no newline",
    )
    assert result.output == b""


def test_write_fd3_appends_to_return_data(guest: Guest) -> None:
    result, _, _ = run_code(guest("sys_io"), method="ret")
    assert result.ok, result.reason
    assert result.output == b"abcdef"
    assert result.logs == ()


def test_input_stream_is_state_then_input(guest: Guest) -> None:
    result, _, _ = run_code(guest("sys_io"), method="drain", state=b"STATE", input=b"-input")
    assert result.ok, result.reason
    assert result.output == b"STATE-input"


def test_write_fd4_appends_to_input_stream_and_reads_back(guest: Guest) -> None:
    result, _, _ = run_code(guest("sys_io"), method="feed", input=b"abc")
    assert result.ok, result.reason
    before, after, final = unpack_u32s(result.output, 3)
    # One byte was read, then fd4 appended "XYZ" behind the two unread ones.
    assert (before, after, final) == (2, 5, 0)
    assert result.output[12:] == b"a" + b"bcXYZ"


@pytest.mark.parametrize("fd", [1, 2, 3, 4])
def test_write_known_fds(guest: Guest, fd: int) -> None:
    result, _, _ = run_code(guest("sys_io"), method="write_fd", input=u32(fd))
    assert result.ok, result.reason
    assert result.output == (b"xok" if fd == 3 else b"ok")
    assert result.logs == (("x",) if fd in (1, 2) else ())


@pytest.mark.parametrize("fd", [0, 5, 9, 0x80000000, 0xFFFFFFFF])
def test_write_bad_fd_is_invalid_argument(guest: Guest, fd: int) -> None:
    result, _, _ = run_code(guest("sys_io"), method="write_fd", input=u32(fd), gas=10**6)
    assert_failed(result, StatusCode.INVALID_SYSCALL_ARGUMENT, f"file descriptor {fd}")
    assert result.gas_used == 10**6


# --- HINT_LEN / HINT_READ ------------------------------------------------------------------


@pytest.mark.parametrize(("k", "data"), [(0, b""), (0, b"hello"), (3, b"hello"), (5, b"hello")])
def test_hint_len_and_read(guest: Guest, k: int, data: bytes) -> None:
    result, _, _ = run_code(guest("sys_io"), method="hint", input=u32(k) + data)
    assert result.ok, result.reason
    assert unpack_u32s(result.output, 2) == (len(data), len(data) - k)
    assert result.output[8:] == data[:k]


@pytest.mark.parametrize(("k", "data"), [(1, b""), (6, b"hello"), (1000, b"x")])
def test_hint_read_past_the_end_is_insufficient_input(guest: Guest, k: int, data: bytes) -> None:
    result, _, _ = run_code(guest("sys_io"), method="hint", input=u32(k) + data)
    assert_failed(
        result, StatusCode.INSUFFICIENT_INPUT, f"read of {k} input bytes with {len(data)} remaining"
    )


def test_reading_a_missing_argument_is_insufficient_input(guest: Guest) -> None:
    result, _, _ = run_code(guest("sys_io"), method="hint", input=b"\x01\x00")
    assert_failed(result, StatusCode.INSUFFICIENT_INPUT)


# --- HOST_READ / HOST_WRITE ----------------------------------------------------------------


def test_storage_write_statuses_and_read_back(guest: Guest) -> None:
    code = guest("sys_storage")
    host = InMemoryHost()
    steps = [
        (V1, StorageStatus.ADDED),
        (V2, StorageStatus.MODIFIED),
        (V2, StorageStatus.ASSIGNED),
        (ZERO32, StorageStatus.DELETED),
        (ZERO32, StorageStatus.ASSIGNED),
        (V1, StorageStatus.ADDED),
    ]
    for value, status in steps:
        result, _, account = run_code(code, method="store", input=KEY + value, host=host)
        assert result.ok, result.reason
        assert unpack_u32s(result.output, 1) == (status,)
        assert host.get_storage(account, KEY) == value
        loaded, _, _ = run_code(code, method="load", input=KEY, host=host)
        assert loaded.ok, loaded.reason
        assert loaded.output == value


def test_storage_read_of_unset_key_is_zero(guest: Guest) -> None:
    result, _, _ = run_code(guest("sys_storage"), method="load", input=b"\x77" * 32)
    assert result.ok, result.reason
    assert result.output == ZERO32


def test_storage_is_the_callees(guest: Guest) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"))
    store = call_args(callee, payload("store", KEY + V1), capacity=4)
    result, _, caller = run_code(guest("sys_caller"), method="call", input=store, host=host)
    copied, out = call_reply(result, 4)
    assert copied == 4
    assert out[:4] == u32(StorageStatus.ADDED)
    assert host.get_storage(callee, KEY) == V1
    assert host.get_storage(caller, KEY) == ZERO32

    load = call_args(callee, payload("load", KEY), capacity=32)
    result, _, _ = run_code(guest("sys_caller"), method="call", input=load, host=host)
    copied, out = call_reply(result, 32)
    assert (copied, out[:32]) == (32, V1)


# --- HOST_GETBALANCE -----------------------------------------------------------------------


@pytest.mark.parametrize("balance", [0, 12345, 2**64 - 1])
def test_getbalance_returns_own_balance(guest: Guest, balance: int) -> None:
    result, _, _ = run_code(guest("sys_storage"), method="balance", balance=balance)
    assert result.ok, result.reason
    assert result.output == balance.to_bytes(8, "little")


def test_getbalance_in_a_callee_is_the_callees(guest: Guest) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"), balance=100)
    args = call_args(callee, payload("balance"), amount=50, capacity=8)
    result, _, caller = run_code(
        guest("sys_caller"), method="call", input=args, host=host, balance=1000
    )
    copied, out = call_reply(result, 8)
    assert (copied, int.from_bytes(out[:8], "little")) == (8, 150)
    assert host.get_balance(caller) == 950


# --- HOST_CONTEXT --------------------------------------------------------------------------


def parse_context(data: bytes) -> tuple[int, bytes, bytes, bytes]:
    assert len(data) >= 80
    return (int.from_bytes(data[:8], "little"), data[8:32], data[32:56], data[56:80])


def test_context_of_a_transaction(guest: Guest) -> None:
    result, _, account = run_code(guest("sys_storage"), method="context")
    assert result.ok, result.reason
    assert parse_context(result.output) == (0, ZERO24, ZERO24, account)


def test_context_of_a_call(guest: Guest) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"))
    args = call_args(callee, payload("context"), amount=7, capacity=80)
    result, _, caller = run_code(
        guest("sys_caller"), method="call", input=args, host=host, balance=10
    )
    copied, out = call_reply(result, 80)
    assert copied == 80
    caller_template = template_address(guest("sys_caller"))
    assert parse_context(out) == (7, caller, caller_template, callee)


@pytest.mark.parametrize("offset", [1, 2, 3, 5, 6])
def test_context_misaligned_pointer_is_invalid_argument(guest: Guest, offset: int) -> None:
    result, _, _ = run_code(guest("sys_storage"), method="context_at", input=u32(offset))
    assert_failed(result, StatusCode.INVALID_SYSCALL_ARGUMENT, "not 4-byte aligned")


@pytest.mark.parametrize("offset", [0, 4, 8])
def test_context_aligned_pointer(guest: Guest, offset: int) -> None:
    result, _, account = run_code(guest("sys_storage"), method="context_at", input=u32(offset))
    assert result.ok, result.reason
    assert parse_context(result.output) == (0, ZERO24, ZERO24, account)


# --- HOST_SPAWN / HOST_DEPLOY --------------------------------------------------------------


@pytest.mark.parametrize("blob", [b"", b"owner-key", bytes(range(256))])
def test_spawn_address_and_account(guest: Guest, blob: bytes) -> None:
    code = guest("sys_storage")
    result, host, _ = run_code(code, method="spawn", input=blob)
    assert result.ok, result.reason
    template = blake3.blake3(code).digest()
    template = bytes(4) + template[12:32]
    expected = bytes(4) + blake3.blake3(template + blob).digest()[12:32]
    assert result.output == expected
    account = host.accounts[expected]
    assert (account.template, account.state, account.balance) == (template, blob, 0)


def test_deploy_stores_template_at_its_address(guest: Guest) -> None:
    deployed = guest("elf_exports")
    result, host, _ = run_code(guest("sys_storage"), method="deploy", input=deployed)
    assert result.ok, result.reason
    address = bytes(4) + blake3.blake3(deployed).digest()[12:32]
    assert result.output == address
    assert host.templates[address] == deployed

    # The deployed template runs: an account of it answers a call.
    account = host.spawn(address, b"")
    args = call_args(account, payload("spend"), capacity=5)
    called, _, _ = run_code(guest("sys_caller"), method="call", input=args, host=host)
    assert call_reply(called, 5) == (5, b"spend" + b"\xee" * 8)


@pytest.mark.parametrize(
    "code",
    [b"", b"not a program", b"\x7fELF" + bytes(60), b"\x7fATH", b"\x7fATH\x13\x00\x00"],
    ids=["empty", "text", "zero-elf", "raw-no-code", "raw-odd-length"],
)
def test_deploy_of_invalid_code_fails(guest: Guest, code: bytes) -> None:
    result, host, _ = run_code(guest("sys_storage"), method="deploy", input=code)
    assert_failed(result, StatusCode.FAILURE, "deploy of invalid code")
    assert template_address(code) not in host.templates


def test_deploy_of_truncated_elf_fails(guest: Guest) -> None:
    code = guest("elf_exports")[:200]
    result, _, _ = run_code(guest("sys_storage"), method="deploy", input=code)
    assert_failed(result, StatusCode.FAILURE, "deploy of invalid code")


# --- HOST_CALL: recursion and depth --------------------------------------------------------


class RecordingHost(InMemoryHost):
    """Records the depth of every call it is asked to make."""

    def __init__(self) -> None:
        super().__init__()
        self.depths: list[int] = []

    def call(self, message: Message) -> CallResult:
        self.depths.append(message.depth)
        return super().call(message)


@pytest.mark.parametrize("n", [0, 1, 5, 10])
def test_self_recursion_counts_down(guest: Guest, n: int) -> None:
    host = RecordingHost()
    args = selector("down") + u32(n)
    result, _, account = run_code(guest("sys_recurse"), method="down", input=args, host=host)
    assert result.ok, result.reason
    assert result.output == u32(n)
    assert host.depths == list(range(1, n + 1))
    # Every level's storage write survived: key i holds i + 1.
    for i in range(n + 1):
        assert host.get_storage(account, u32(i) + bytes(28)) == u32(i + 1) + bytes(28)


def test_call_depth_11_fails_and_rolls_back(guest: Guest) -> None:
    host = RecordingHost()
    args = selector("down") + u32(11)
    result, _, account = run_code(
        guest("sys_recurse"), method="down", input=args, host=host, gas=10**8
    )
    assert_failed(result, StatusCode.CALL_DEPTH_EXCEEDED, "call depth 11")
    assert result.gas_used == 10**8
    assert host.depths == list(range(1, 12))
    # Every nested frame was undone; only the transaction's own write (n = 11) remains,
    # since nothing above the transaction rolls it back.
    for i in range(11):
        assert host.get_storage(account, u32(i) + bytes(28)) == ZERO32
    assert host.get_storage(account, u32(11) + bytes(28)) == u32(12) + bytes(28)


def test_unbounded_self_recursion_stops_at_depth_limit(guest: Guest) -> None:
    host = RecordingHost()
    result, _, _ = run_code(
        guest("sys_recurse"), method="forever", input=selector("forever"), host=host
    )
    assert_failed(result, StatusCode.CALL_DEPTH_EXCEEDED)
    assert host.depths == list(range(1, 12))


# --- HOST_CALL: rollback, value, balance, output, gas --------------------------------------


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        (0, StatusCode.FAILURE),
        (1, StatusCode.INSUFFICIENT_INPUT),
        (2, StatusCode.INVALID_SYSCALL_ARGUMENT),
    ],
)
def test_failed_callee_is_rolled_back_and_caller_aborts(
    guest: Guest, mode: int, status: StatusCode
) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"), balance=100)
    host.set_storage(callee, KEY, V2)
    args = call_args(callee, payload("store_then_fail", bytes([mode]) + KEY + V1), amount=50)
    result, _, caller = run_code(
        guest("sys_caller"), method="call", input=args, host=host, balance=1000
    )
    assert_failed(result, status, f"call to 0x{callee.hex()} failed")
    assert result.logs == ("before call",)
    assert host.get_storage(callee, KEY) == V2
    assert host.get_balance(callee) == 100
    assert host.get_balance(caller) == 1000


def test_successful_callee_keeps_storage_and_value(guest: Guest) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"), balance=100)
    args = call_args(callee, payload("store", KEY + V1), amount=50, capacity=4)
    result, _, caller = run_code(
        guest("sys_caller"), method="call", input=args, host=host, balance=1000
    )
    assert call_reply(result, 4)[0] == 4
    assert result.logs == ("before call", "after call")
    assert host.get_storage(callee, KEY) == V1
    assert (host.get_balance(caller), host.get_balance(callee)) == (950, 150)


@pytest.mark.parametrize("call_payload", [b"", payload("anything", b"args")])
def test_value_transfer_to_codeless_account(guest: Guest, call_payload: bytes) -> None:
    host = InMemoryHost()
    recipient = bytes(4) + b"\x42" * 20
    args = call_args(recipient, call_payload, amount=300, capacity=16)
    result, _, caller = run_code(
        guest("sys_caller"), method="call", input=args, host=host, balance=1000
    )
    assert call_reply(result, 16) == (0, b"\xee" * 24)
    assert host.get_balance(caller) == 700
    assert host.get_balance(recipient) == 300
    assert host.accounts[recipient].template is None


def test_empty_payload_runs_no_code(guest: Guest) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"))
    args = call_args(callee, b"", amount=5, capacity=16)
    result, _, _ = run_code(guest("sys_caller"), method="call", input=args, host=host, balance=5)
    assert call_reply(result, 16) == (0, b"\xee" * 24)
    assert host.get_balance(callee) == 5


@pytest.mark.parametrize(("balance", "amount"), [(0, 1), (10, 11), (2**63, 2**64 - 1)])
def test_insufficient_balance(guest: Guest, balance: int, amount: int) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"), balance=7)
    args = call_args(callee, payload("balance"), amount=amount)
    result, _, caller = run_code(
        guest("sys_caller"), method="call", input=args, host=host, balance=balance
    )
    assert_failed(result, StatusCode.INSUFFICIENT_BALANCE, f"balance {balance} < {amount}")
    assert (host.get_balance(caller), host.get_balance(callee)) == (balance, 7)


def test_whole_balance_can_be_sent(guest: Guest) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"))
    args = call_args(callee, payload("balance"), amount=10, capacity=8)
    result, _, caller = run_code(
        guest("sys_caller"), method="call", input=args, host=host, balance=10
    )
    assert call_reply(result, 8) == (8, u32(10) + bytes(4) + b"\xee" * 8)
    assert host.get_balance(caller) == 0


@pytest.mark.parametrize(("size", "capacity"), [(100, 0), (100, 10), (100, 100), (100, 200)])
def test_call_output_is_truncated_to_capacity(guest: Guest, size: int, capacity: int) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"))
    args = call_args(callee, payload("blob", u32(size)), capacity=capacity)
    result, _, _ = run_code(guest("sys_caller"), method="call", input=args, host=host)
    copied, out = call_reply(result, capacity)
    assert copied == min(size, capacity)
    assert out[:copied] == bytes(range(copied))
    # Nothing past what was copied is touched.
    assert out[copied:] == b"\xee" * (capacity + 8 - copied)


def test_callee_gas_is_charged_to_the_caller(guest: Guest) -> None:
    storage, caller_code = guest("sys_storage"), guest("sys_caller")

    def through_call(n: int, codeless: bool = False) -> int:
        host = InMemoryHost()
        callee = bytes(4) + b"\x42" * 20 if codeless else install(host, storage)
        args = call_args(callee, payload("burn", u32(n)), capacity=4)
        result, _, _ = run_code(caller_code, method="call", input=args, host=host)
        copied = call_reply(result, 4)[0]
        assert copied == (0 if codeless else 4)
        return result.gas_used

    def standalone(n: int) -> int:
        result, _, _ = run_code(storage, method="burn", input=u32(n))
        assert result.ok, result.reason
        return result.gas_used

    # The caller runs the same instructions whatever n is: all the difference is the callee's.
    callee_extra = standalone(1000) - standalone(0)
    assert callee_extra > 1000 * GAS_PER_INSTRUCTION
    assert through_call(1000) - through_call(0) == callee_extra
    # The same call to an account without code runs the same caller instructions and no
    # callee: the difference is exactly what the callee spends when run on its own.
    for n in (0, 1000):
        assert through_call(n) - through_call(n, codeless=True) == standalone(n)


def test_callee_out_of_gas_propagates(guest: Guest) -> None:
    host = InMemoryHost()
    callee = install(host, guest("sys_storage"))
    args = call_args(callee, payload("spin"))
    result, _, _ = run_code(guest("sys_caller"), method="call", input=args, host=host, gas=200_000)
    assert_failed(result, StatusCode.OUT_OF_GAS, "out of gas")
    assert result.gas_used == 200_000
    assert result.logs == ("before call",)


# --- ED25519_VERIFY ------------------------------------------------------------------------

SIGNER = nacl.signing.SigningKey(bytes(range(32)))
PUBKEY = bytes(SIGNER.verify_key)
MESSAGE = b"athena transaction bytes"
SIGNATURE = SIGNER.sign(MESSAGE).signature

#: Encodings that must not verify: non-canonical, and points of small order (1, 2, 4, 8).
BAD_KEYS = {
    "all-ff": b"\xff" * 32,
    "identity": bytes([1]) + bytes(31),
    "order-2": bytes.fromhex("ec" + "ff" * 30 + "7f"),
    "order-4": bytes(32),
    "order-4-neg": bytes(31) + b"\x80",
    "order-8": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    "order-8-b": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
}


def verify(guest: Guest, message: bytes, pubkey: bytes, signature: bytes) -> int:
    result, _, _ = run_code(
        guest("sys_verify"), method="verify", input=u32(len(message)) + message + pubkey + signature
    )
    assert result.ok, result.reason
    assert result.gas_used == GAS_PER_INSTRUCTION * result.instructions + ED25519_VERIFY_GAS
    (verdict,) = unpack_u32s(result.output, 1)
    return verdict


def test_ed25519_valid_signature(guest: Guest) -> None:
    assert verify(guest, MESSAGE, PUBKEY, SIGNATURE) == 1
    empty = SIGNER.sign(b"").signature
    assert verify(guest, b"", PUBKEY, empty) == 1


def test_ed25519_invalid_signatures(guest: Guest) -> None:
    flipped = bytes([SIGNATURE[0] ^ 1]) + SIGNATURE[1:]
    assert verify(guest, MESSAGE, PUBKEY, flipped) == 0
    assert verify(guest, MESSAGE + b"!", PUBKEY, SIGNATURE) == 0
    other = bytes(nacl.signing.SigningKey(b"\x09" * 32).verify_key)
    assert verify(guest, MESSAGE, other, SIGNATURE) == 0
    assert verify(guest, MESSAGE, PUBKEY, bytes(64)) == 0
    assert verify(guest, MESSAGE, PUBKEY, b"\xff" * 64) == 0
    # S increased by the group order L: the same point, but not canonical.
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(SIGNATURE[32:], "little") + order
    assert verify(guest, MESSAGE, PUBKEY, SIGNATURE[:32] + s.to_bytes(32, "little")) == 0


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_ed25519_malformed_keys_are_zero(guest: Guest, key: bytes) -> None:
    # With a small-order key, R = identity and S = 0 satisfy the naive equation.
    trivial = bytes([1]) + bytes(63)
    for signature in (SIGNATURE, trivial, bytes(64), b"\xff" * 64):
        assert verify(guest, MESSAGE, key, signature) == 0
        assert verify(guest, b"", key, signature) == 0


def test_deploy_of_oversized_code_is_refused(guest: Guest) -> None:
    code = b"\x7fATH" + bytes(MAX_TEMPLATE_BYTES)
    result, _, _ = run_code(guest("sys_storage"), method="deploy", input=code)
    assert_failed(result, StatusCode.INVALID_SYSCALL_ARGUMENT, "exceeds")
