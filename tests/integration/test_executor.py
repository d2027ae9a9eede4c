"""The executor process against four real smeshers.

- Bundles of Athena transactions submitted straight to a smesher end up in the executor's
  state exactly as an independent in-memory run of the certified blocks says: every
  receipt, balance, nonce, storage slot, receipts root and state root; its proofs verify
  and a tampered value does not; `apply_layer` replays of the same blocks into fresh
  LevelDBs give the process's records.
- Killed with SIGKILL at seeded random moments while layers and traffic stream in, the
  executor resumes and ends with exactly the records of a second executor that ran
  uninterrupted: no divergence, no lost layer.
- Hostile input on every RPC method is refused with an error and the executor keeps
  serving; `estimate` changes nothing.
"""

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from athena_vm.address import template_address
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.payload import Payload, selector
from devnet import methods
from devnet.block import Block, decode_block
from devnet.bundle import Bundle
from devnet.errors import RpcError
from devnet.execution.state import encode_account
from devnet.l1 import l1_address
from devnet.state_tree import tree_key, verify_proof
from devnet.transaction import Transaction, decode_transaction
from devnet.wire import RpcClient
from tests.athena_replay import (
    GAS,
    SLOT0,
    WALLET,
    ReplayedLayer,
    Wallets,
    counter_wallet,
    replay_in_memory,
    replay_leveldb,
)
from tests.integration.cluster import Cluster, write_config

SMESHERS = [f"smesher-{i}" for i in range(4)]
EXECUTOR = "executor"
SECOND = "executor-b"


def start_cluster(tmp: Path, *executors: str) -> Cluster:
    logs = tmp / "logs"
    logs.mkdir()
    extra = tuple(e for e in executors if e != EXECUTOR)
    c = Cluster(write_config(tmp, extra_executors=extra), logs)
    c.executors = {name: tmp / f"devnet-{name}.toml" for name in extra}
    for name in [*SMESHERS, *executors]:
        c.start(name)
    return c


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("executor"), EXECUTOR)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def counter_code(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return counter_wallet(tmp_path_factory.mktemp("counter_wallet"))


# --- helpers ----------------------------------------------------------------------------


def applied(c: Cluster, name: str = EXECUTOR) -> int:
    value = c.call(name, "status")["applied_layer"]
    return -1 if value is None else int(value)


def relay_nonce(c: Cluster, smesher: str = "smesher-0") -> int:
    key = c.config.network.test_key("relay-0")
    return int(c.call(smesher, "get_l1_account", address=l1_address(key.public_key))["nonce"])


def submit(c: Cluster, w: Wallets, *groups: tuple[bytes, ...]) -> list[Bundle]:
    """One bundle per group, consecutive relay nonces, each to another smesher."""
    first = relay_nonce(c)
    bundles = []
    for i, txs in enumerate(groups):
        bundle = w.bundle("relay-0", first + i, txs)
        reply = c.call(
            SMESHERS[(first + i) % len(SMESHERS)], "submit_bundle", bundle=bundle.encoded
        )
        assert reply["id"] == bundle.id
        bundles.append(bundle)
    return bundles


def tx_id(raw: bytes) -> bytes:
    return decode_transaction(raw).id


def wait_receipts(c: Cluster, txs: tuple[bytes, ...]) -> dict[bytes, dict[str, Any]]:
    """Wait until the executor has a receipt for every transaction; returns them by id."""
    ids = [tx_id(raw) for raw in txs]
    got: dict[bytes, dict[str, Any]] = {}

    def done() -> bool:
        for i in ids:
            if i not in got:
                got[i] = c.call(EXECUTOR, "get_receipt", tx_id=i)
        return True

    c.wait(f"receipts of {len(ids)} transactions", done, timeout=60)
    return got


def certified_blocks(c: Cluster, upto: int, smesher: str = "smesher-0") -> list[Block]:
    blocks = []
    for layer in range(upto + 1):
        event = c.call(smesher, "get_block", layer=layer)
        block = decode_block(event["block"])
        assert block.layer == layer and block.id == event["block_id"]
        blocks.append(block)
    return blocks


def served_receipts(layers: list[ReplayedLayer]) -> dict[bytes, dict[str, Any]]:
    """The receipt served for each transaction id: of the layer that executed it, or if
    none did, of the last layer that rejected it."""
    out: dict[bytes, dict[str, Any]] = {}
    for layer in layers:
        for receipt in layer.receipts:
            old = out.get(receipt["tx_id"])
            if old is None or old["status_name"] == "REJECTED":
                out[receipt["tx_id"]] = receipt
    return out


def compare_with_reference(c: Cluster, tmp: Path) -> tuple[int, InMemoryHost]:
    """Replay every certified block the executor applied and compare all it serves.

    Returns the layer compared up to and the reference host.
    """
    upto = applied(c)
    assert upto >= 0
    blocks = certified_blocks(c, upto)
    config = c.config
    host, layers = replay_in_memory(config, blocks)
    records = [c.call(EXECUTOR, "get_layer", layer=n) for n in range(upto + 1)]
    for record, expected in zip(records, layers, strict=True):
        assert record["layer"] == expected.layer
        assert record["block_id"] == expected.block_id
        assert record["tx_ids"] == expected.tx_ids
        assert record["receipts_root"] == expected.receipts_root
        assert record["root"] == expected.root, f"state root of layer {expected.layer}"
    for receipt in served_receipts(layers).values():
        assert c.call(EXECUTOR, "get_receipt", tx_id=receipt["tx_id"]) == receipt
    for address, acct in host.accounts.items():
        served = c.call(EXECUTOR, "get_account", address=address)
        assert served == {
            "address": address,
            "exists": True,
            "balance": acct.balance,
            "nonce": acct.nonce,
            "template": acct.template,
            "state": acct.state,
        }
        for slot, value in acct.storage.items():
            assert c.call(EXECUTOR, "get_storage", address=address, key=slot) == value
    # The executor's own code, replayed into fresh databases, gives the process's records:
    # once left open, once reopened before every layer as after a restart.
    for name, reopen in (("plain", False), ("reopened", True)):
        replayed = replay_leveldb(tmp / name, config, blocks, reopen=reopen)
        assert [r.as_dict() for r in replayed] == records
    return upto, host


class Subscriber(threading.Thread):
    """Collects a subscription's events on its own trio loop until `enough(events)`."""

    def __init__(
        self, c: Cluster, method: str, enough: Callable[[list[Any]], bool], timeout: float = 60
    ) -> None:
        super().__init__(daemon=True)
        cfg = c.config.executor
        self.endpoint = f"{cfg.host}:{cfg.port}"
        self.method, self.enough, self.timeout = method, enough, timeout
        self.events: list[Any] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            trio.run(self._collect)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()

    async def _collect(self) -> None:
        async with RpcClient(self.endpoint, timeout=10) as client:
            with trio.move_on_after(self.timeout):
                async with client.subscribe(self.method) as events:
                    self.ready.set()
                    async for event in events:
                        self.events.append(event)
                        if self.enough(self.events):
                            return


def call(name: str) -> Payload:
    return Payload(selector(name), b"")


# --- 1. the executor equals an in-memory run -----------------------------------------------


def test_state_receipts_and_proofs_match_an_in_memory_run(
    cluster: Cluster, counter_code: bytes, tmp_path: Path
) -> None:
    c = cluster
    config = c.config
    c.wait("the executor to apply layer 1", lambda: applied(c) >= 1)
    w = Wallets(config)
    counter = template_address(counter_code)
    fresh, counted = w.address("fresh"), w.address("counted", counter)
    nobody = bytes(4) + b"\x5a" * 20

    # Layer A: spends (two funding wallets that do not exist yet), a spend over the
    # balance, a forged signature, a deploy.
    spends = (
        w.spend("user-0", w.address("user-1"), 1_000),
        w.spend("user-0", fresh, 10**9),
        w.spend("user-0", counted, 10**9),
        w.spend("user-1", w.address("user-2"), 2_000),
    )
    over = w.spend("user-2", w.address("user-3"), 10**16)
    forged = w.spend("user-1", nobody, 5, signer="user-3")
    deploy = w.tx("user-3", methods.deploy(counter_code))
    submit(c, w, spends, (over, forged, deploy))
    got = wait_receipts(c, (*spends, over, forged, deploy))
    assert all(got[tx_id(t)]["status_name"] == "SUCCESS" for t in spends)
    assert got[tx_id(over)]["status_name"] == "INSUFFICIENT_BALANCE"
    assert got[tx_id(forged)]["status_name"] == "REJECTED"
    assert "invalid signature" in got[tx_id(forged)]["reason"]
    assert got[tx_id(deploy)]["status_name"] == "SUCCESS"
    assert got[tx_id(deploy)]["output"] == counter

    # Layer B: the funded wallets spawn themselves, one from the deployed template.
    spawns = (w.spawn("fresh"), w.spawn("counted", counter))
    submit(c, w, spawns)
    got = wait_receipts(c, spawns)
    assert all(r["status_name"] == "SUCCESS" for r in got.values())

    # Layer C: calls into the deployed program, directly and through another wallet's
    # proxy; one fails after writing storage and receiving coins, so both roll back.
    calls = (
        w.tx("counted", call("bump"), tpl=counter),
        w.tx("counted", call("bump"), tpl=counter),
        w.tx("counted", call("clear"), tpl=counter),
        w.tx("counted", call("bump"), tpl=counter),
        w.tx("user-0", methods.proxy(counted, "bump", None)),
        w.tx("user-0", methods.proxy(counted, "bump_then_fail", None, amount=5)),
        w.spend("fresh", nobody, 777),
    )
    ids = {tx_id(t) for t in calls}
    receipts = Subscriber(c, "subscribe_receipts", lambda ev: ids <= {e["tx_id"] for e in ev})
    layers = Subscriber(c, "subscribe_layers", lambda ev: len(ev) >= 3)
    for sub in (receipts, layers):
        sub.start()
        assert sub.ready.wait(15) and sub.error is None
    submit(c, w, calls)
    got = wait_receipts(c, calls)
    statuses = sorted(r["status_name"] for r in got.values())
    assert statuses == ["FAILURE"] + ["SUCCESS"] * 6
    for sub in (receipts, layers):
        sub.join(30)
        assert not sub.is_alive() and sub.error is None
    streamed = {e["tx_id"]: e for e in receipts.events}
    assert all(streamed[i] == got[i] for i in ids)
    streamed_layers = [e["layer"] for e in layers.events]
    assert streamed_layers == list(range(streamed_layers[0], streamed_layers[0] + 3))
    for event in layers.events:
        assert c.call(EXECUTOR, "get_layer", layer=event["layer"]) == event

    # A transaction included again in a later layer (a user who also sent it straight to a
    # smesher, say) is rejected there; its receipt remains the one of its execution.
    first = c.call(EXECUTOR, "get_receipt", tx_id=tx_id(spends[0]))
    (again,) = submit(c, w, (spends[0],))
    c.wait("the repeat to be applied", lambda: relay_nonce(c) > again.nonce)
    mark = c.last("smesher-0")
    c.wait("the executor to apply it", lambda: applied(c) >= mark)
    repeats = [
        n
        for n in range(first["layer"] + 1, mark + 1)
        if tx_id(spends[0]) in c.call(EXECUTOR, "get_layer", layer=n)["tx_ids"]
    ]
    assert len(repeats) == 1
    assert c.call(EXECUTOR, "get_receipt", tx_id=tx_id(spends[0])) == first

    upto, host = compare_with_reference(c, tmp_path)
    assert host.get_storage(counted, SLOT0) != bytes(32)
    assert host.template_code(counter) == counter_code

    # Proofs against the served root, for an account and a storage slot.
    for address, key, expected in (
        (fresh, None, encode_account(host.accounts[fresh])),
        (counted, SLOT0, host.get_storage(counted, SLOT0)),
    ):
        params: dict[str, Any] = {"address": address}
        if key is not None:
            params["key"] = key
        proof = c.call(EXECUTOR, "get_proof", **params)
        assert proof["layer"] >= upto
        root = c.call(EXECUTOR, "get_layer", layer=proof["layer"])["root"]
        assert proof["root"] == root
        assert proof["value"] == expected
        leaf = tree_key(proof["record_key"])
        assert verify_proof(root, leaf, expected, proof["proof"])
        tampered = bytes([expected[0] ^ 1]) + expected[1:]
        assert not verify_proof(root, leaf, tampered, proof["proof"])
        assert not verify_proof(root, leaf, None, proof["proof"])
        assert not verify_proof(bytes(32), leaf, expected, proof["proof"])
        bad = bytearray(proof["proof"])
        bad[-1] ^= 1
        assert not verify_proof(root, leaf, expected, bytes(bad))
    # An account that never existed: an exclusion proof.
    absent = c.call(EXECUTOR, "get_proof", address=nobody[:-1] + b"\x00")
    assert absent["value"] is None
    leaf = tree_key(absent["record_key"])
    assert verify_proof(absent["root"], leaf, None, absent["proof"])
    assert not verify_proof(absent["root"], leaf, b"anything", absent["proof"])


# --- 4. hostile input ----------------------------------------------------------------------

SHORT = b"\x00" * 23
HOSTILE: list[tuple[str, dict[str, object], str]] = [
    ("status", {"extra": 1}, "unknown param"),
    ("get_account", {"address": SHORT}, "24 bytes"),
    ("get_account", {"address": "sm1qqqq"}, "expected bytes"),
    ("get_account", {}, "missing"),
    ("get_storage", {"address": bytes(24), "key": b"\x01" * 31}, "32 bytes"),
    ("get_storage", {"address": SHORT, "key": bytes(32)}, "24 bytes"),
    ("get_storage", {"address": bytes(24), "key": 7}, "expected bytes"),
    ("get_receipt", {"tx_id": bytes(32)}, "no receipt"),
    ("get_receipt", {"tx_id": b""}, "no receipt"),
    ("get_receipt", {"tx_id": [1, 2]}, "expected bytes"),
    ("get_layer", {"layer": 10**9}, "not applied"),
    ("get_layer", {"layer": 2**63}, "not applied"),
    ("get_layer", {"layer": -1}, "not applied"),
    ("get_layer", {"layer": "1"}, "expected int"),
    ("get_layer", {"layer": 1.5}, "expected int"),
    ("get_proof", {"address": SHORT}, "24 bytes"),
    ("get_proof", {"address": bytes(24), "key": b"\x00" * 33}, "32 bytes"),
    ("get_proof", {"address": None}, "expected bytes"),
    ("estimate", {"tx": b""}, "malformed"),
    ("estimate", {"tx": b"\x04" + b"\xff" * 200}, "malformed"),
    ("estimate", {"tx": b"\x00" * 200_000}, "exceeds"),
    ("estimate", {"tx": "0x01"}, "expected bytes"),
    ("estimate", {}, "missing"),
    ("subscribe_receipts", {"from_layer": 0}, "unknown param"),
    ("subscribe_layers", {"x": None}, "unknown param"),
    ("no_such_method", {}, "no method"),
]


def test_hostile_rpc_input_and_estimate(
    cluster: Cluster, counter_code: bytes, guest: Callable[[str], bytes], tmp_path: Path
) -> None:
    c = cluster
    config = c.config
    c.wait("the executor to apply layer 1", lambda: applied(c) >= 1)
    for method, params, message in HOSTILE:
        with pytest.raises(RpcError, match=message):
            c.call(EXECUTOR, method, **params)
        assert c.call(EXECUTOR, "status")["name"] == EXECUTOR

    # estimate: a receipt with the gas, and no trace in the state.
    user = config.network.test_key("user-0")
    principal = user.wallet_address(WALLET)
    program = guest("sys_storage")
    recipient = bytes(4) + b"\x6b" * 20

    def signed(payload: Payload, nonce: int, gas: int = GAS) -> bytes:
        tx = Transaction(principal, nonce, gas, 1, payload)
        return tx.sign(user, config.network.genesis_id).encode()

    before = c.call(EXECUTOR, "get_account", address=principal)
    status = c.call(EXECUTOR, "status")
    nonce = before["nonce"]
    spend = signed(methods.spend(recipient, 4242), nonce)
    deploy = signed(methods.deploy(program), nonce + 1)
    estimates = [c.call(EXECUTOR, "estimate", tx=raw) for raw in (spend, deploy)]
    assert estimates[1]["status_name"] == "REJECTED"  # nonce + 1 is not next yet
    assert "nonce gap" in estimates[1]["reason"]
    estimates[1] = c.call(EXECUTOR, "estimate", tx=signed(methods.deploy(program), nonce))
    for estimate in estimates:
        assert estimate["status_name"] == "SUCCESS"
        assert 0 < estimate["gas_used"] <= GAS and estimate["fee"] == estimate["gas_used"]
        assert estimate["layer"] == -1
    assert estimates[1]["output"] == template_address(program)
    assert c.call(EXECUTOR, "get_account", address=principal) == before
    assert not c.call(EXECUTOR, "get_account", address=recipient)["exists"]
    with pytest.raises(RpcError, match="no receipt"):
        c.call(EXECUTOR, "get_receipt", tx_id=tx_id(spend))
    after = c.call(EXECUTOR, "status")
    if after["applied_layer"] == status["applied_layer"]:
        assert after["root"] == status["root"]
    # Estimating costs the executor time that nobody pays for: it runs at most a bounded
    # amount of gas.
    with pytest.raises(RpcError, match="at most"):
        c.call(EXECUTOR, "estimate", tx=signed(methods.spend(recipient, 1), nonce, 50_000_000))

    # The estimated transactions for real: the gas was predicted, and the state is still
    # exactly what an independent run of the blocks gives (no estimate left a trace).
    w = Wallets(config)
    w.nonces[principal] = nonce
    real = (spend, signed(methods.deploy(program), nonce + 1))
    submit(c, w, real)
    got = wait_receipts(c, real)
    assert got[tx_id(spend)]["gas_used"] == estimates[0]["gas_used"]
    assert got[tx_id(real[1])]["output"] == template_address(program)
    compare_with_reference(c, tmp_path)
    mark = applied(c)
    c.wait("layers to keep being applied", lambda: applied(c) >= mark + 2)


# --- 2. crash consistency ------------------------------------------------------------------


@dataclass
class Traffic:
    """Bundles of spends between the test wallets, one every ~layer, on a thread."""

    c: Cluster
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    bundles: int = 0
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        c = self.c
        w = Wallets(c.config)
        users = [f"user-{i}" for i in range(c.config.athena.test_wallets)]
        wallets = [w.address(u) for u in users]
        nonce: int | None = None
        while not self.stop.wait(self.rng.uniform(0.2, 0.6)):
            try:
                if nonce is None:
                    nonce = relay_nonce(c)
                txs = []
                for _ in range(self.rng.randint(1, 8)):
                    to = self.rng.choice([*wallets, bytes(4) + self.rng.randbytes(20)])
                    txs.append(w.spend(self.rng.choice(users), to, self.rng.randint(1, 10**6)))
                bundle = w.bundle("relay-0", nonce, tuple(txs))
                c.call(self.rng.choice(SMESHERS), "submit_bundle", bundle=bundle.encoded)
                nonce += 1
                self.bundles += 1
            except Exception as exc:  # a refused or lost bundle: resynchronise the nonces
                self.errors.append(repr(exc))
                nonce = None
                try:
                    for address in wallets:
                        account = c.call(SECOND, "get_account", address=address)
                        w.nonces[address] = account["nonce"]
                except Exception as again:
                    self.errors.append(repr(again))


@dataclass
class L1Progress:
    """Fails the run when the smeshers stop certifying: the executor's consistency cannot be
    judged on a stalled L1 (and the stall is a smesher problem, reported as such)."""

    c: Cluster
    start: int
    limit: float = 30.0
    last: int = -1
    since: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        now, last = time.monotonic(), self.c.last("smesher-0")
        if last != self.last:
            self.last, self.since = last, now
        elif now - self.since > self.limit:
            raise AssertionError(
                f"the L1 stalled: no layer certified after {last} for {self.limit:.0f} s "
                f"(a smesher liveness failure, not the executor's); logs in {self.c.logs}"
            )


def crash_run(tmp: Path, seed: int, kills: int) -> None:
    c = start_cluster(tmp, EXECUTOR, SECOND)
    rng = random.Random(seed)
    traffic = Traffic(c, random.Random(seed + 1))
    thread = threading.Thread(target=traffic.run, daemon=True)
    try:
        c.wait("both executors to apply layer 1", lambda: min(applied(c), applied(c, SECOND)) >= 1)
        thread.start()
        time.sleep(1.0)
        l1 = L1Progress(c, start=c.last("smesher-0"))
        for _ in range(kills):
            l1.check()
            if rng.random() < 0.5:
                # Soon after it serves again: often while it catches up, in mid-layer.
                c.wait("the executor to serve", lambda: applied(c) >= 0, timeout=60)
                time.sleep(rng.uniform(0.0, 0.5))
            else:
                time.sleep(rng.uniform(0.2, 2.0))  # maybe before it even serves
            c.kill(EXECUTOR)
            time.sleep(rng.uniform(0.0, 0.3))
            c.start(EXECUTOR)
        time.sleep(1.5)  # traffic applied live by the restarted executor
        traffic.stop.set()
        thread.join(10)
        last = c.last("smesher-0")
        assert last >= l1.start + 5, f"the L1 certified only layers {l1.start}..{last}"
        c.wait(
            "both executors to catch up",
            lambda: min(applied(c), applied(c, SECOND)) >= last,
            timeout=120,
        )
        divergent, lost, busy = [], [], 0
        for layer in range(last + 1):
            block_id = c.call("smesher-0", "get_block", layer=layer)["block_id"]
            records = []
            for name in (EXECUTOR, SECOND):
                try:
                    records.append(c.call(name, "get_layer", layer=layer))
                except RpcError:
                    lost.append((name, layer))
            if len(records) < 2:
                continue
            if records[0] != records[1] or records[0]["block_id"] != block_id:
                divergent.append(layer)
            busy += bool(records[0]["tx_ids"])
        if divergent:
            layer = divergent[0]
            detail = {name: c.call(name, "get_layer", layer=layer) for name in (EXECUTOR, SECOND)}
            blocks = {n: c.call(n, "get_block", layer=layer)["block_id"] for n in SMESHERS}
            replayed = replay_leveldb(tmp / "replay", c.config, certified_blocks(c, layer))
            right = [n for n, r in detail.items() if r["root"] == replayed[-1].root]
            raise AssertionError(
                f"{len(divergent)} divergent layers from {layer}: {detail}; blocks {blocks}; "
                f"a replay of smesher-0's blocks agrees with {right}; logs in {c.logs}"
            )
        assert lost == [], "lost (executor, layer)s"
        assert traffic.bundles >= 3 and busy >= 3, (traffic.bundles, busy, traffic.errors)
        assert len(traffic.errors) <= traffic.bundles // 4, traffic.errors
        starts = (c.logs / f"{EXECUTOR}.log").read_text().count('"executor started"')
        assert starts >= 1 + kills // 2  # most restarts got as far as serving
    finally:
        traffic.stop.set()
        c.stop_all()


def test_kill_9_resumes_without_divergence(tmp_path: Path) -> None:
    crash_run(tmp_path, seed=20_240_611, kills=5)


@pytest.mark.slow
def test_kill_9_soak(tmp_path: Path) -> None:
    crash_run(tmp_path, seed=7, kills=300)
