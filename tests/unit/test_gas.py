"""Gas is exact: 4 per executed instruction plus a syscall's extra, checked after each one."""

from collections.abc import Iterable

import nacl.signing
import pytest

from athena_vm import ExecutionResult, StatusCode
from tests import asm
from tests.asm import A0, A1, A2, A3, T0, ZERO, li
from tests.vmrun import run_code

ED25519_VERIFY = 0x00640020
HINT_READ = 0xF1
WRITE = 0x02
MSG, PUBKEY, SIG = 0x10000, 0x10100, 0x10200


def run(items: Iterable[int | Iterable[int]], gas: int, input: bytes = b"") -> ExecutionResult:
    result, _, _ = run_code(asm.raw(*items), gas=gas, input=input)
    return result


def straight_line(k: int) -> list[int]:
    return [asm.addi(A0, A0, 1)] * k


def assert_exact(program: list[int], cost: int, input: bytes = b"") -> None:
    """`program` costs exactly `cost`: one less runs out of gas, the limit or more succeed."""
    under = run(program, cost - 1, input)
    assert under.status == StatusCode.OUT_OF_GAS, under
    assert (under.gas_left, under.output) == (0, b"")
    exact = run(program, cost, input)
    assert exact.status == StatusCode.SUCCESS, exact.reason
    assert (exact.gas_used, exact.gas_left) == (cost, 0)
    over = run(program, cost + 1, input)
    assert over.status == StatusCode.SUCCESS, over.reason
    assert (over.gas_used, over.gas_left) == (cost, 1)


@pytest.mark.parametrize("k", [1, 2, 5, 17, 100])
def test_straight_line_costs_4_per_instruction(k):
    result = run(straight_line(k), 10**9)
    assert result.ok
    assert result.gas_used == 4 * k
    assert result.gas_left == 10**9 - 4 * k
    assert result.registers[A0] == k
    assert_exact(straight_line(k), 4 * k)


def test_out_of_gas_on_the_last_instruction_keeps_nothing():
    program = [
        asm.addi(T0, ZERO, WRITE),
        asm.addi(A0, ZERO, 3),
        asm.addi(A2, ZERO, 4),
        asm.ecall(),  # writes 4 bytes of return data
        asm.nop(),
    ]
    assert run(program, 20).output == program[0].to_bytes(4, "little")
    result = run(program, 19)
    assert result.status == StatusCode.OUT_OF_GAS
    assert (result.gas_used, result.gas_left, result.output) == (19, 0, b"")


def test_zero_gas_limit():
    result = run([asm.nop()], 0)
    assert result.status == StatusCode.OUT_OF_GAS
    assert result.gas_left == 0


def test_only_executed_instructions_count():
    program = [asm.jal(ZERO, 4 * 10), *straight_line(9), asm.nop()]  # skips 9
    result = run(program, 10**6)
    assert result.gas_used == 8
    assert_exact(program, 8)


def test_ecall_costs_4():
    # HINT_LEN has no extra cost; WRITE to the log neither.
    program = [
        asm.addi(T0, ZERO, 0xF0),
        asm.ecall(),
        asm.addi(T0, ZERO, WRITE),
        asm.addi(A0, ZERO, 1),
        asm.addi(A2, ZERO, 8),
        asm.ecall(),
    ]
    assert_exact(program, 4 * 6)


def test_halt_costs_4():
    program = [asm.addi(T0, ZERO, 0), asm.ecall(), *straight_line(5)]
    assert_exact(program, 8)


def verify_program() -> list[int]:
    """Reads message (32 B), public key and signature from the input, then verifies."""

    def hint_read(ptr: int, length: int) -> list[int]:
        return [
            *li(A0, ptr),
            asm.addi(A1, ZERO, length),
            asm.addi(T0, ZERO, HINT_READ),
            asm.ecall(),
        ]

    return [
        *hint_read(MSG, 32),
        *hint_read(PUBKEY, 32),
        *hint_read(SIG, 64),
        *li(A0, MSG),
        asm.addi(A1, ZERO, 32),
        *li(A2, PUBKEY),
        *li(A3, SIG),
        *li(T0, ED25519_VERIFY),
        asm.ecall(),
    ]


def signed_input(valid: bool) -> bytes:
    key = nacl.signing.SigningKey(bytes(range(32)))
    message = b"athena gas test message 32 bytes"
    signature = key.sign(message).signature
    if not valid:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return message + bytes(key.verify_key) + signature


@pytest.mark.parametrize("valid", [True, False])
def test_ed25519_verify_costs_4_plus_100(valid):
    program = verify_program()
    cost = 4 * len(program) + 100
    data = signed_input(valid)
    result = run(program, 10**6, data)
    assert result.ok, result.reason
    assert result.registers[T0] == (1 if valid else 0)
    assert result.gas_used == cost
    assert_exact(program, cost, data)
    # the verify instruction alone cannot be afforded with only its base cost
    short = run(program, cost - 100, data)
    assert short.status == StatusCode.OUT_OF_GAS


def test_ed25519_verify_of_zero_key_costs_the_same():
    program = [*li(A2, PUBKEY), *li(A3, SIG), *li(T0, ED25519_VERIFY), asm.ecall()]
    result = run(program, 10**6)
    assert result.ok, result.reason
    assert result.registers[T0] == 0
    assert_exact(program, 4 * len(program) + 100)


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param([asm.ebreak()], id="invalid instruction"),
        pytest.param([asm.lw(A0, ZERO, 2)], id="misaligned load"),
        pytest.param([asm.addi(A0, ZERO, 1), asm.addi(T0, ZERO, 0), asm.ecall()], id="exit 1"),
        pytest.param([*li(T0, 0x1234), asm.ecall()], id="unknown syscall"),
    ],
)
def test_failure_returns_no_gas_and_no_output(tail):
    program = [
        asm.addi(T0, ZERO, WRITE),
        asm.addi(A0, ZERO, 3),
        asm.addi(A2, ZERO, 4),
        asm.ecall(),  # 4 bytes of return data, discarded by the failure
        *tail,
    ]
    for gas in (10**6, 4 * len(program) + 1000):
        result = run(program, gas)
        assert result.status == StatusCode.FAILURE
        assert (result.gas_used, result.gas_left, result.output) == (gas, 0, b"")


def loop_program(n: int) -> list[int]:
    return [
        asm.addi(A1, ZERO, n),  # 0
        asm.addi(A0, A0, 1),  # 4
        asm.add(A2, A2, A0),  # 8
        asm.bne(A0, A1, -8),  # 12
        asm.addi(A3, ZERO, 1),  # 16
    ]


def test_gas_sweep_on_a_loop():
    program = loop_program(8)
    full = 4 * (1 + 3 * 8 + 1)
    assert run(program, 10**6).gas_used == full
    for gas in range(full + 6):
        result = run(program, gas)
        if gas < full:
            assert result.status == StatusCode.OUT_OF_GAS, gas
            assert (result.gas_used, result.gas_left) == (gas, 0)
        else:
            assert result.status == StatusCode.SUCCESS, gas
            assert (result.gas_used, result.gas_left) == (full, gas - full)
            assert result.registers[A2] == 36
