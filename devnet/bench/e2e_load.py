"""The load process of `devnet bench e2e`: signed wallet spends, as fast as the relay takes them.

It runs in its own OS process (started by `devnet.bench.e2e`), so signing and encoding
never compete with the measuring process's clock and bookkeeping inside one interpreter.

The load is closed-loop: a transaction is *in flight* from its submission until the
executor reports the layer that ran it (`subscribe_layers`), and at most `inflight` are in
flight at once (and at most `per_wallet` per wallet, below the relay's per-principal
limit). Beyond that it submits as fast as the relay acknowledges, so the rate it reaches is
the rate the network sustains, and the in-flight bound keeps a saturated network from
turning into an ever-growing queue.

Each wallet belongs to one connection and every batch carries a wallet's nonces in order,
so nothing arrives with a gap the relay would have to hold. A transaction refused for a
reason that may pass later (429: pool or principal full; 503: executor unreachable; a lost
connection; a nonce too far ahead of the relay's view, which may lag a layer behind) is
re-sent with the same bytes; a duplicate answer means the relay already has it. Any other
refusal is counted and its wallet is retired, since its later nonces could no longer run.

Results go to a msgpack file: every acknowledged transaction with its submission and
acknowledgement times, and the refusals counted by their kind (the first word of the
relay's message).
"""

import random
import resource
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgpack
import nacl.signing
import trio

from devnet import methods
from devnet.builtin_templates import template
from devnet.errors import RpcError, WireError
from devnet.keys import derive_test_key
from devnet.log import configure
from devnet.transaction import Transaction
from devnet.wire import RpcClient

#: Codes after which the same transaction may be re-sent: busy (pool or principal limit,
#: rate limit) and unavailable (the relay cannot reach the executor).
RETRY_CODES = frozenset({429, 503, -32002})
#: Refusals that pass later: the relay's view of the principal's next nonce may be a
#: layer behind what this process saw executed.
RETRY_KINDS = frozenset({"nonce_too_high"})
DUPLICATE = 409
#: Pauses after batches the relay mostly refused as busy: doubling from the first to the
#: last while it stays busy, so a full pool is not hammered (each refusal still costs the
#: relay a decode) and the load resumes quickly once there is room.
BUSY_PAUSE = 0.05
MAX_BUSY_PAUSE = 1.0
IDLE_PAUSE = 0.01
CALL_TIMEOUT = 30.0
#: After the run, how long refused transactions are still re-sent (see `drive`).
FLUSH_SECONDS = 15.0


@dataclass(frozen=True)
class LoadSpec:
    """Everything the load process needs; plain values, so it pickles to a spawned child."""

    relay: str
    executor: str
    genesis_id: bytes
    key_phrase: str
    #: (test key index, next nonce) of every wallet to drive.
    wallets: tuple[tuple[int, int], ...]
    seconds: float
    inflight: int
    per_wallet: int
    batch: int
    connections: int
    gas_limit: int
    gas_price: int
    result_path: str
    #: Submissions per second at most (0: as fast as the relay acknowledges).
    rate: float = 0.0
    #: Spends signed per wallet before the run starts (more are signed as needed).
    presign: int = 0


@dataclass
class Wallet:
    index: int
    address: bytes
    signer: nacl.signing.SigningKey
    nonce: int
    #: Signed but not yet acknowledged, oldest nonce first (re-sent on a retryable refusal).
    unacked: deque[tuple[int, bytes, bytes]] = field(default_factory=deque)
    #: Signed before the run, not sent yet, in nonce order.
    presigned: deque[tuple[int, bytes, bytes]] = field(default_factory=deque)
    inflight: int = 0
    retired: bool = False


@dataclass
class LoadState:
    spec: LoadSpec
    wallets: list[Wallet]
    recipients: list[bytes]
    inflight: int = 0
    #: tx id -> (wallet index, nonce, submitted at, acknowledged at)
    acked: dict[bytes, tuple[int, int, float, float]] = field(default_factory=dict)
    owner: dict[bytes, Wallet] = field(default_factory=dict)
    done: set[bytes] = field(default_factory=set)
    rejections: Counter[str] = field(default_factory=Counter)
    call_errors: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(1))


def make_wallets(spec: LoadSpec) -> list[Wallet]:
    wallet_template = template("wallet").address
    out = []
    for index, nonce in spec.wallets:
        key = derive_test_key(f"{spec.key_phrase}/user-{index}", 0)
        out.append(
            Wallet(
                index,
                key.wallet_address(wallet_template),
                nacl.signing.SigningKey(key.seed),
                nonce,
            )
        )
    return out


def sign_spend(state: LoadState, wallet: Wallet) -> tuple[int, bytes, bytes]:
    """The wallet's next spend (to another driven wallet, 1 coin): (nonce, id, bytes)."""
    spec = state.spec
    recipient = state.recipients[state.rng.randrange(len(state.recipients))]
    tx = Transaction(
        wallet.address, wallet.nonce, spec.gas_limit, spec.gas_price, methods.spend(recipient, 1)
    )
    signature = wallet.signer.sign(tx.signing_bytes(spec.genesis_id)).signature
    signed = Transaction(
        tx.principal, tx.nonce, tx.gas_limit, tx.gas_price, tx.payload, signature=signature
    )
    wallet.nonce += 1
    return signed.nonce, signed.id, signed.encode()


def presign(state: LoadState) -> int:
    """Sign `spec.presign` spends per wallet ahead of the run, so that signing (a client's
    work, on the client's machine in real life) does not take cores from the devnet while
    it is measured. Returns how many were signed."""
    for wallet in state.wallets:
        for _ in range(state.spec.presign):
            wallet.presigned.append(sign_spend(state, wallet))
    return state.spec.presign * len(state.wallets)


def next_spend(state: LoadState, wallet: Wallet) -> tuple[int, bytes, bytes]:
    return wallet.presigned.popleft() if wallet.presigned else sign_spend(state, wallet)


def next_batch(
    state: LoadState, wallets: list[Wallet], fresh: bool = True
) -> list[tuple[Wallet, int, bytes, bytes]]:
    """Up to `batch` transactions from these wallets: re-sends first, then (if `fresh`) new
    spends, each wallet's nonces in order, spread over the wallets with room in their
    window."""
    spec = state.spec
    out: list[tuple[Wallet, int, bytes, bytes]] = []
    open_wallets = [w for w in wallets if not w.retired]
    share = max(1, spec.batch // max(1, len(open_wallets)))
    for wallet in open_wallets:
        taken = 0
        for nonce, tx_id, raw in wallet.unacked:
            out.append((wallet, nonce, tx_id, raw))
            taken += 1
        while (
            fresh
            and taken < share
            and len(out) < spec.batch
            and wallet.inflight + taken < spec.per_wallet
            and state.inflight + len(out) < spec.inflight
        ):
            nonce, tx_id, raw = next_spend(state, wallet)
            wallet.unacked.append((nonce, tx_id, raw))
            out.append((wallet, nonce, tx_id, raw))
            taken += 1
        if len(out) >= spec.batch:
            break
    return out


def record_results(
    state: LoadState,
    batch: list[tuple[Wallet, int, bytes, bytes]],
    results: list[dict[str, Any]],
    sent_at: float,
) -> int:
    """Apply one batch's per-transaction results; returns how many were refused as busy."""
    now = time.time()
    busy = 0
    for (wallet, nonce, tx_id, _), result in zip(batch, results, strict=True):
        error = result.get("error")
        code = int(error["code"]) if error else 0
        if error is None or code == DUPLICATE:
            if tx_id not in state.acked:
                state.acked[tx_id] = (wallet.index, nonce, sent_at, now)
                state.owner[tx_id] = wallet
                wallet.inflight += 1
                state.inflight += 1
            _forget_unacked(wallet, tx_id)
            continue
        kind = rejection_kind(code, str(error["message"]))
        state.rejections[kind] += 1
        if code in RETRY_CODES or kind in RETRY_KINDS:
            busy += 1
        else:
            wallet.retired = True  # its later nonces can no longer run
            wallet.unacked.clear()
    return busy


def rejection_kind(code: int, message: str) -> str:
    """The rule a refusal names (`stale_nonce: …`), else its code and the message's start."""
    head = message.split(":", 1)[0]
    return head if head and " " not in head else f"{code} {message[:40]}"


def _forget_unacked(wallet: Wallet, tx_id: bytes) -> None:
    for i, (_, unacked_id, _) in enumerate(wallet.unacked):
        if unacked_id == tx_id:
            del wallet.unacked[i]
            return


async def submit_batch(client: RpcClient, raws: list[bytes], batched: bool) -> list[dict[str, Any]]:
    """Per-transaction results, `{id}` or `{error}`, through `submit_txs` when the relay has
    it, else one `submit_tx` per transaction, concurrently."""
    if batched:
        results: list[dict[str, Any]] = await client.call(
            "submit_txs", txs=raws, timeout=CALL_TIMEOUT
        )
        return results
    out: list[dict[str, Any]] = [{} for _ in raws]

    async def one(i: int, raw: bytes) -> None:
        try:
            out[i] = {"id": await client.call("submit_tx", tx=raw, timeout=CALL_TIMEOUT)}
        except RpcError as exc:
            out[i] = {"error": {"code": exc.code, "message": exc.message}}

    async with trio.open_nursery() as nursery:
        for i, raw in enumerate(raws):
            nursery.start_soon(one, i, raw)
    return out


@dataclass
class Pause:
    """One connection's back-off while the relay is busy."""

    seconds: float = 0.0

    async def busy(self) -> None:
        self.seconds = min(MAX_BUSY_PAUSE, max(BUSY_PAUSE, self.seconds * 2))
        await trio.sleep(self.seconds)

    def ok(self) -> None:
        self.seconds = 0.0


async def send(
    client: RpcClient,
    state: LoadState,
    batch: list[tuple[Wallet, int, bytes, bytes]],
    batched: bool,
    pause: Pause,
) -> None:
    """Submit one batch and apply its results, backing off while the relay is busy."""
    sent_at = time.time()
    try:
        results = await submit_batch(client, [raw for _, _, _, raw in batch], batched)
    except RpcError as exc:
        state.call_errors[f"{exc.code}: {exc.message[:60]}"] += 1
        await pause.busy()
        return
    except WireError as exc:  # outcome unknown: re-sent, and a duplicate counts as acked
        state.call_errors[type(exc).__name__] += 1
        await pause.busy()
        return
    state.calls += 1
    busy = record_results(state, batch, results, sent_at)
    if busy * 2 > len(batch):
        await pause.busy()
    else:
        pause.ok()


async def drive(state: LoadState, wallets: list[Wallet], deadline: float, batched: bool) -> None:
    """One connection's submission loop until the deadline; then it only re-sends what
    was refused as busy (for at most `FLUSH_SECONDS`), so that no acknowledged transaction
    is left waiting behind a nonce that was never acknowledged."""
    spec = state.spec
    pause = Pause()
    async with RpcClient(spec.relay, node="bench-load", timeout=CALL_TIMEOUT) as client:
        due = trio.current_time()  # with a rate: when the next batch is due
        while time.time() < deadline:
            batch = next_batch(state, wallets)
            if not batch:
                await trio.sleep(IDLE_PAUSE)
                continue
            await send(client, state, batch, batched, pause)
            if spec.rate:
                # Paced by a schedule, not by a pause after each call (which would add the
                # call's own time to every period): a late batch is made up for at once,
                # but never more than a second's worth.
                due = max(due, trio.current_time() - 1.0)
                due += len(batch) * spec.connections / spec.rate
                await trio.sleep_until(due)
        flush_until = time.time() + FLUSH_SECONDS
        while time.time() < flush_until:
            batch = next_batch(state, wallets, fresh=False)
            if not batch:
                return
            await send(client, state, batch, batched, pause)


async def follow_execution(state: LoadState, client: RpcClient) -> None:
    """Free the window of every transaction of ours that a layer ran."""
    while True:
        try:
            async with client.subscribe("subscribe_layers") as layers:
                async for record in layers:
                    for tx_id in record["tx_ids"]:
                        wallet = state.owner.pop(tx_id, None)
                        if wallet is not None:
                            state.done.add(tx_id)
                            wallet.inflight -= 1
                            state.inflight -= 1
        except WireError:
            await trio.sleep(0.2)


async def methods_of(relay: str) -> set[str]:
    async with RpcClient(relay, node="bench-load", timeout=10) as client:
        listed = await client.call("rpc.methods")
    return set(listed["methods"])


async def run_load(state: LoadState, start_at: float) -> dict[str, Any]:
    spec, wallets = state.spec, state.wallets
    batched = "submit_txs" in await methods_of(spec.relay)
    groups = [wallets[i :: spec.connections] for i in range(spec.connections)]
    async with RpcClient(spec.executor, node="bench-load", timeout=10) as executor:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_execution, state, executor)
            await trio.sleep(max(0.0, start_at - time.time()))
            started = time.time()
            deadline = started + spec.seconds
            async with trio.open_nursery() as drivers:
                for group in groups:
                    if group:
                        drivers.start_soon(drive, state, group, deadline, batched)
            nursery.cancel_scope.cancel()
    return {
        "started": started,
        "stopped": deadline,
        "batched": batched,
        "calls": state.calls,
        "acked": [
            [tx_id, w, nonce, sent, ack] for tx_id, (w, nonce, sent, ack) in state.acked.items()
        ],
        "rejections": dict(state.rejections),
        "call_errors": dict(state.call_errors),
        "retired": [w.index for w in wallets if w.retired],
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(spec: LoadSpec, parent: Connection) -> None:
    """The child process's entry point: sign ahead, tell the parent, receive the unix
    time to start at, run, then write the results file."""
    configure("warning")
    wallets = make_wallets(spec)
    state = LoadState(spec, wallets, [w.address for w in wallets])
    started = time.monotonic()
    signed = presign(state)
    parent.send((signed, time.monotonic() - started))
    start_at = float(parent.recv())
    result = trio.run(run_load, state, start_at)
    result["presigned"] = signed
    Path(spec.result_path).write_bytes(msgpack.packb(result, use_bin_type=True))
