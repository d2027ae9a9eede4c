"""Running programs in tests: one call from code bytes to an ExecutionResult."""

from collections.abc import Callable
from pathlib import Path

from athena_vm import (
    ExecutionContext,
    ExecutionPayload,
    ExecutionResult,
    Payload,
    execute,
    load_program,
    selector,
)
from athena_vm.build import build
from athena_vm.in_memory_host import InMemoryHost, template_address


def run_code(
    code: bytes,
    *,
    method: str | None = None,
    input: bytes = b"",
    state: bytes = b"",
    gas: int = 2**32 - 1,
    host: InMemoryHost | None = None,
    balance: int = 0,
) -> tuple[ExecutionResult, InMemoryHost, bytes]:
    """Run `code` as the template of a fresh account; returns (result, host, account)."""
    host = host or InMemoryHost()
    template = host.add_template(code)
    account = template_address(template + state)
    host.account(account).template = template
    host.account(account).state = state
    host.set_balance(account, balance)
    payload = ExecutionPayload(state, Payload(selector(method) if method else None, input))
    context = ExecutionContext(callee=account, callee_template=template)
    result = execute(load_program(code), host, context, payload.encode(), gas)
    return result, host, account


def compiler(sources: Path, out_dir: Path) -> Callable[[str], bytes]:
    """get("name") compiles `sources`/name.c with the SDK into `out_dir` (once per name)
    and returns the ELF."""
    built: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in built:
            built[name] = build(sources / f"{name}.c", out_dir / f"{name}.elf")
        return built[name]

    return get
