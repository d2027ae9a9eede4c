"""Deploy your own C program (examples/programs/counter.c), spawn an account of it, call it."""

import tempfile
from pathlib import Path

from athena_vm.address import template_address
from athena_vm.build import build
from devnet.keys import KeyPair
from devnet.scenario import Scenario

SOURCE = Path(__file__).resolve().parents[1] / "programs" / "counter.c"


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def scenario(s: Scenario) -> None:
    net = s.net
    caller = net.wallets[2]
    with s.step("build counter.c with the SDK"):
        with tempfile.TemporaryDirectory() as work:
            code = build(SOURCE, Path(work) / "counter.elf")
    with s.step("deploy it as a template", within_layers=5):
        deployment = caller.deploy(code)
        assert deployment.template == template_address(code)
    owner = KeyPair.generate()
    with s.step("spawn a counter account", within_layers=10):
        counter = net.spawn(
            deployment.template,
            owner.public_key,
            owner,
            funder=caller,
            amount=10**8,
        )
    with s.step("increment it twice from a wallet", within_layers=10):
        first = caller.call(counter, "increment")
        second = caller.call(counter, "increment")
        assert (first.output, second.output) == (u64(1), u64(2))
    with s.step("get returns 2"):
        assert caller.call(counter, "get").output == u64(2)
    s.check("storage slot 0 holds 2", lambda: net.storage(counter, bytes(32))[:8] == u64(2))
    s.check("the slot's proof verifies", lambda: net.proof(counter, bytes(32)).verify())
