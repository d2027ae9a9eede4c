"""`devnet vm run`: run a program on the in-memory host and show the result."""

import json
from pathlib import Path
from typing import Annotated

import typer

from athena_vm import (
    DEFAULT_GAS_LIMIT,
    ExecutionContext,
    ExecutionPayload,
    ExecutionResult,
    Payload,
    ProgramError,
    execute,
    load_program,
    selector,
)
from athena_vm.in_memory_host import InMemoryHost, template_address
from athena_vm.machine import Instr, Machine

app = typer.Typer(help="Run Athena programs locally.", no_args_is_help=True)

ABI_NAMES = (
    "zero",
    "ra",
    "sp",
    "gp",
    "tp",
    "t0",
    "t1",
    "t2",
    "s0",
    "s1",
    "a0",
    "a1",
    "a2",
    "a3",
    "a4",
    "a5",
)


def _hex(value: str, what: str) -> bytes:
    text = value.removeprefix("0x")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise typer.BadParameter(f"{what} is not hex: {value!r}") from None


def result_json(result: ExecutionResult) -> dict[str, object]:
    return {
        "status": result.status.name,
        "status_code": int(result.status),
        "gas_used": result.gas_used,
        "gas_left": result.gas_left,
        "reason": result.reason,
        "output": result.output.hex(),
        "logs": list(result.logs),
    }


def _trace_line(pc: int, ins: Instr, changed: tuple[int, int] | None, _m: Machine) -> None:
    effect = f"  x{changed[0]}({ABI_NAMES[changed[0]]})=0x{changed[1]:08x}" if changed else ""
    typer.echo(f"0x{pc:08x}  {ins.word:08x}  {ins.mnemonic():<10}{effect}")


@app.command("run")
def run_command(
    file: Annotated[Path, typer.Argument(help="ELF or raw (\\x7fATH) program")],
    selector_name: Annotated[
        str | None, typer.Option("--selector", help="export to call, e.g. spend")
    ] = None,
    input_hex: Annotated[str, typer.Option("--input", help="method input, hex")] = "",
    state_hex: Annotated[str, typer.Option("--state", help="account state, hex")] = "",
    gas: Annotated[int, typer.Option(help="gas limit", min=0)] = DEFAULT_GAS_LIMIT,
    balance: Annotated[int, typer.Option(help="the callee's balance", min=0)] = 0,
    trace: Annotated[bool, typer.Option(help="print every instruction executed")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Run FILE on an in-memory host, entered at its export or its entry point."""
    try:
        code = file.read_bytes()
        program = load_program(code)
    except (OSError, ProgramError) as exc:
        typer.echo(f"cannot load {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    host = InMemoryHost()
    template = host.add_template(code)
    callee = template_address(code + b"callee")
    host.account(callee).template = template
    host.account(callee).state = _hex(state_hex, "--state")
    host.set_balance(callee, balance)
    chosen = selector(selector_name) if selector_name else None
    payload = ExecutionPayload(
        _hex(state_hex, "--state"), Payload(chosen, _hex(input_hex, "--input"))
    )
    context = ExecutionContext(callee=callee, callee_template=template)
    result = execute(
        program, host, context, payload.encode(), gas, tracer=_trace_line if trace else None
    )
    if as_json:
        typer.echo(json.dumps(result_json(result)))
        return
    for line in result.logs:
        typer.echo(f"log: {line}")
    typer.echo(f"status:   {result.status.name} ({int(result.status)})")
    if result.reason:
        typer.echo(f"reason:   {result.reason}")
    typer.echo(f"gas used: {result.gas_used}  gas left: {result.gas_left}")
    typer.echo(f"output:   {result.output.hex() or '(none)'}")
