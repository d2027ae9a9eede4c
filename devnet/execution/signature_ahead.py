"""Wallet signatures checked in a helper process while the layer executes.

A wallet spend's `verify` spends about a fifth of the executor's time in one ed25519
check, and the check's inputs are known before the layer runs: the built-in wallet's
`verify` checks its owner's key (its 32-byte state) over the transaction's signing bytes.
So before executing a block the executor (or a shadow, or the replay benchmark) hands
those triples, in execution order, to `signature_worker` in a process of its own, on the
other core; its answers come back a chunk at a time on a reader thread into
`athena_vm.ed25519`'s memo, well ahead of the transactions that need them. The VM still
performs every check it performs: a triple the helper found valid is answered from the
memo, anything else (another template, a key changed, an answer not back yet, no helper)
is verified in place. Results, gas and roots are the same either way.

The helper is best effort by design: if it cannot start or dies, the node logs it once and
verifies everything itself.
"""

import queue
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import msgpack

from athena_vm.ed25519 import known_valid, memo_key, remember_valid
from athena_vm.in_memory_host import InMemoryHost
from devnet.block import BlockTx
from devnet.builtin_templates import template
from devnet.execution.signature_worker import FrameError, decode_keys, read_frame, write_frame
from devnet.log import get_logger

OWNER_BYTES = 32
SIGNATURE_BYTES = 64


def wallet_signatures(
    items: Sequence[BlockTx], host: InMemoryHost, genesis_id: bytes
) -> list[bytes]:
    """The memo keys the built-in wallet's `verify` will check for `items`, in order.

    The owner's key is read from the state before the block runs; a wallet spawned in the
    same block is left out (its key is not there yet), and a guess that turns out wrong
    only misses the memo.
    """
    wallet = template("wallet").address
    keys: list[bytes] = []
    for item in items:
        tx = item.tx
        if tx.template is not None or len(tx.signature) != SIGNATURE_BYTES:
            continue
        if host.account_template(tx.principal) != wallet:
            continue
        owner = host.account_state(tx.principal)
        if len(owner) == OWNER_BYTES:
            keys.append(memo_key(owner, tx.signing_bytes(genesis_id), tx.signature))
    return keys


def _children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (the helper, once closed)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class SignaturesAhead:
    """A `signature_worker` process and the two threads that talk to it.

    `submit` never blocks: requests go through a queue to a writer thread (the worker may
    still be busy with the previous layer), answers come back on a reader thread.
    """

    def __init__(self, node: str) -> None:
        self.log = get_logger(node)
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._process: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self.submitted = 0
        self.answered = 0
        #: Valid answers the VM used, and the helper's CPU seconds (known after `close`).
        self.used = 0
        self.cpu_seconds = 0.0
        self._children_cpu = 0.0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        self._children_cpu = _children_cpu_seconds()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "devnet.execution.signature_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            self.log.warning("signature helper did not start; verifying in place", error=str(exc))
            return
        self._threads = [
            threading.Thread(target=self._write, name="signatures-out", daemon=True),
            threading.Thread(target=self._read, name="signatures-in", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, keys: list[bytes]) -> None:
        """Have these memo keys checked ahead, in this order."""
        if keys and self.alive:
            self.submitted += len(keys)
            self._requests.put(msgpack.packb(keys))

    def close(self) -> None:
        """Stop the worker (it exits when its input closes) and the threads."""
        process, self._process = self._process, None
        if process is None:
            return
        self._requests.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        self.used = self.answered - known_valid()
        self.cpu_seconds = _children_cpu_seconds() - self._children_cpu

    def describe(self) -> str:
        """One line of figures for a benchmark's report (after `close`)."""
        return (
            f"{self.submitted:,} checked ahead in a helper process "
            f"({self.cpu_seconds:,.2f} CPU s), {self.answered:,} valid, "
            f"{self.used:,} of them used by the VM"
        )

    def _write(self) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            while (payload := self._requests.get()) is not None:
                write_frame(process.stdin, payload)
            process.stdin.close()
        except OSError as exc:
            self.log.warning("signature helper stopped; verifying in place", error=str(exc))

    def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            while (payload := read_frame(process.stdout)) is not None:
                valid = decode_keys(payload)
                self.answered += len(valid)
                remember_valid(valid)
        except (OSError, ValueError, FrameError) as exc:
            self.log.warning("signature helper answers lost; verifying in place", error=str(exc))


@contextmanager
def checked_ahead(node: str, enabled: bool) -> Iterator[SignaturesAhead | None]:
    """A started helper for the block, closed after it (None when not `enabled`)."""
    if not enabled:
        yield None
        return
    ahead = SignaturesAhead(node)
    ahead.start()
    try:
        yield ahead
    finally:
        ahead.close()


def report_line(ahead: SignaturesAhead | None) -> str:
    """The benchmarks' `signatures` line."""
    return (
        f"signatures   {ahead.describe() if ahead else 'verified in place (--no-signatures-ahead)'}"
    )
