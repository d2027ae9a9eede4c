"""The relay process with four real smeshers and the executor.

- 10 wallets send 20 transactions each through the relay: every one is executed with the
  right balances, subscribers see pending → bundled → included → executed, the relay's
  fee share and L1 spending add up.
- Every refusal names its rule and changes nothing; a batch (`submit_txs`) gets one answer
  per transaction.
- A flood of 10× the pool cap, from one principal and from many, keeps the pool within its
  caps, evicts the cheapest first, and honest transactions still land.
- Killed right after persisting a bundle (before sending it) and killed again at a random
  moment, the relay restarts, re-sends what it promised, and nothing is executed twice.
"""

import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from devnet import methods
from devnet.builtin_templates import template
from devnet.config import DevnetConfig
from devnet.errors import RpcError
from devnet.keys import KeyPair, save_key_file
from devnet.l1 import l1_address
from devnet.transaction import Transaction
from devnet.wire import RpcClient
from tests.integration.cluster import ROOT, Cluster, write_config

SMESHERS = [f"smesher-{i}" for i in range(4)]
RELAY = "relay-0"
WALLET = template("wallet").address
GAS_LIMIT = 100_000
SINK = bytes(4) + b"\x5a" * 20  # recipient of every spend
L1_GENESIS = 1_000_000_000  # the relay's L1 balance at genesis (cluster.write_config)


def start(tmp: Path, wallets: int, **relay: Any) -> Cluster:
    logs = tmp / "logs"
    logs.mkdir()
    # 1-second layers: the agreement's timeouts scale with the layer, and on a loaded CI
    # machine 500 ms layers can stall it; the relay's behaviour does not depend on speed.
    c = Cluster(write_config(tmp, layer_ms=1000, relay=relay, test_wallets=wallets), logs)
    for name in [*SMESHERS, "executor", RELAY]:
        c.start(name)
    return c


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start(
        tmp_path_factory.mktemp("relay"),
        15,
        bundle_max_bytes=8192,
        min_gas_price=2,
        max_attempts=20,
    )
    try:
        yield c
    finally:
        c.stop_all()


def endpoint(c: Cluster, role: str) -> str:
    cfg = c.config
    if role == "relay":
        return f"{cfg.relay.host}:{cfg.relay.port}"
    if role == "executor":
        return f"{cfg.executor.host}:{cfg.executor.port}"
    node = cfg.smesher(role)
    return f"{node.host}:{node.port}"


@asynccontextmanager
async def clients(c: Cluster) -> AsyncIterator[tuple[RpcClient, RpcClient, RpcClient]]:
    """(relay, executor, smesher-0) clients, once the relay follows blocks."""
    async with (
        RpcClient(endpoint(c, "relay"), timeout=10) as relay,
        RpcClient(endpoint(c, "executor"), timeout=10) as executor,
        RpcClient(endpoint(c, SMESHERS[0]), timeout=10) as smesher,
    ):
        await until(lambda: ready(relay, executor), 60, c)
        yield relay, executor, smesher


async def ready(relay: RpcClient, executor: RpcClient) -> bool:
    status = await relay.call("status")
    applied = (await executor.call("status"))["applied_layer"]
    return status["block_layer"] is not None and applied is not None


async def until(check: Any, timeout: float, c: Cluster, what: str = "") -> None:
    with trio.move_on_after(timeout):
        while True:
            try:
                if await check():
                    return
            except (RpcError, OSError, KeyError):
                pass
            except Exception as exc:  # a connection still coming up
                if "connect" not in str(exc).lower() and "closed" not in str(exc).lower():
                    raise
            await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting {timeout} s {what}; logs in {c.logs}")


def user(cfg: DevnetConfig, index: int) -> tuple[KeyPair, bytes]:
    key = cfg.network.test_key(f"user-{index}")
    return key, key.wallet_address(WALLET)


def spend(
    cfg: DevnetConfig, index: int, nonce: int, amount: int, price: int = 2, **kw: Any
) -> Transaction:
    key, address = user(cfg, index)
    tx = Transaction(
        address, nonce, kw.get("gas_limit", GAS_LIMIT), price, methods.spend(SINK, amount)
    )
    return tx.sign(key, cfg.network.genesis_id)


ORDER = ["pending", "bundled", "included", "executed"]


async def watch(relay: RpcClient, tx_id: bytes, seen: list[dict[str, Any]]) -> None:
    async with relay.subscribe("subscribe_tx", id=tx_id) as events:
        async for event in events:
            seen.append(event)


# --- 10 wallets × 20 transactions ---------------------------------------------------------


async def test_wallets_send_through_the_relay(cluster: Cluster) -> None:
    c, cfg = cluster, cluster.config
    async with clients(c) as (relay, executor, smesher):
        sink_before = (await executor.call("get_account", address=SINK))["balance"]
        txs = {i: [spend(cfg, i, n, 1000 + 10 * i + n) for n in range(20)] for i in range(10)}
        walks: dict[bytes, list[dict[str, Any]]] = {}
        async with trio.open_nursery() as watchers:

            async def send(index: int) -> None:
                for n, tx in enumerate(txs[index]):
                    assert await relay.call("submit_tx", tx=tx.encode()) == tx.id
                    if n in (0, 7, 19):
                        walks[tx.id] = []
                        watchers.start_soon(watch, relay, tx.id, walks[tx.id])
                    await trio.sleep(random.random() * 0.05)

            async with trio.open_nursery() as senders:
                for index in txs:
                    senders.start_soon(send, index)

            all_ids = [tx.id for batch in txs.values() for tx in batch]

            async def all_executed() -> bool:
                for tx_id in all_ids:
                    if (await relay.call("tx_status", id=tx_id))["state"] != "executed":
                        return False
                return True

            await until(all_executed, 120, c, "for every transaction to execute")
        # Statuses: every walk is in order and ends executed; most are complete.
        complete = 0
        for events in walks.values():
            states = [e["state"] for e in events]
            assert states == sorted(states, key=ORDER.index), states
            assert len(set(states)) == len(states) and states[-1] == "executed", states
            complete += states == ORDER
            included = next(e for e in events if e["state"] == "included")
            block = await smesher.call("get_block", layer=included["layer"])
            assert block["block_id"] == included["block_id"]
            assert events[-1]["receipt"]["layer"] == included["layer"]
        assert complete >= len(walks) // 2, walks
        # Balances: each wallet paid its spends and the fees in its receipts, nonce 20.
        fees = relay_fees = 0
        for index, batch in txs.items():
            _, address = user(cfg, index)
            paid = 0
            for tx in batch:
                status = await relay.call("tx_status", id=tx.id)
                receipt = status["receipt"]
                assert receipt["status_name"] == "SUCCESS", receipt
                paid += receipt["fee"] + int.from_bytes(tx.payload.input[24:], "little")
                fees += receipt["fee"]
                relay_fees += receipt["relay_fee"]
            account = await executor.call("get_account", address=address)
            assert account["nonce"] == 20
            assert account["balance"] == cfg.athena.test_wallet_balance - paid
        sent = sum(
            int.from_bytes(tx.payload.input[24:], "little") for b in txs.values() for tx in b
        )
        assert (await executor.call("get_account", address=SINK))["balance"] == sink_before + sent
        # The relay's accounts: its Athena fee share, and the SMH its bundles cost on L1.
        status = await relay.call("status")
        beneficiary = await executor.call("get_account", address=status["beneficiary"])
        assert beneficiary["balance"] == status["athena_fees_earned"] >= relay_fees > 0
        assert relay_fees == fees - fees * cfg.executor.fee_share_bps // 10_000 or relay_fees < fees

        async def l1_settled() -> bool:
            spent = (await relay.call("status"))["l1_spent"]
            account = await smesher.call("get_l1_account", address=status["l1_address"])
            return bool(spent > 0 and account["balance"] == L1_GENESIS - spent)

        await until(l1_settled, 10, c, "for the L1 balance to match the relay's spending")
        assert status["bundles_included"] >= 2  # 200 transactions do not fit one bundle
        mempool = await relay.call("mempool")
        assert mempool["count"] == 0 and mempool["bytes"] == 0


# --- refusals ------------------------------------------------------------------------------


async def test_every_rejection_names_its_reason_and_changes_nothing(cluster: Cluster) -> None:
    c, cfg = cluster, cluster.config
    async with clients(c) as (relay, executor, _):
        # User 10 gets one transaction executed, so its nonce 0 is used.
        first = spend(cfg, 10, 0, 5)
        await relay.call("submit_tx", tx=first.encode())

        async def executed() -> bool:
            return bool((await relay.call("tx_status", id=first.id))["state"] == "executed")

        await until(executed, 30, c, "for the first transaction")
        # A transaction parked behind a nonce gap stays pending: duplicate and replacement
        # are checked against it.
        parked = spend(cfg, 11, 3, 5, price=5)
        await relay.call("submit_tx", tx=parked.encode())
        forged = spend(cfg, 12, 0, 5)
        forged_raw = forged.encode()[:-1] + bytes([forged.encode()[-1] ^ 1])
        cases: list[tuple[str, bytes, int, str]] = [
            ("bad signature", forged_raw, 400, "invalid: invalid signature"),
            ("stale nonce", spend(cfg, 10, 0, 6).encode(), 400, "stale_nonce"),
            ("underpriced", spend(cfg, 12, 0, 5, price=1).encode(), 400, "underpriced"),
            (
                "over balance",
                spend(cfg, 12, 0, cfg.athena.test_wallet_balance).encode(),
                400,
                "over_balance",
            ),
            ("oversized", b"\x04" + bytes(200 * 1024), 400, "oversized"),
            ("garbage", b"\x01garbage bytes", 400, "malformed"),
            ("duplicate", parked.encode(), 409, "duplicate"),
            (
                "lower fee replacement",
                spend(cfg, 11, 3, 6, price=4).encode(),
                400,
                "replacement_underpriced",
            ),
            (
                "equal fee replacement",
                spend(cfg, 11, 3, 7, price=5).encode(),
                400,
                "replacement_underpriced",
            ),
        ]
        for name, raw, code, kind in cases:
            pool = await relay.call("mempool")
            accounts = [
                await executor.call("get_account", address=user(cfg, i)[1]) for i in (10, 11, 12)
            ]
            with pytest.raises(RpcError) as info:
                await relay.call("submit_tx", tx=raw)
            assert info.value.code == code, (name, info.value)
            assert info.value.message.startswith(kind), (name, info.value.message)
            after = await relay.call("mempool")
            assert after["rejected"] == pool["rejected"] + 1, name
            for key in ("count", "bytes", "pending", "in_flight", "principals", "tracked"):
                assert after[key] == pool[key], (name, key)
            assert (await relay.call("tx_status", id=parked.id))["state"] == "pending"
            assert accounts == [
                await executor.call("get_account", address=user(cfg, i)[1]) for i in (10, 11, 12)
            ], name
        # A strictly higher fee replaces, and the old one says so.
        better = spend(cfg, 11, 3, 8, price=6)
        assert await relay.call("submit_tx", tx=better.encode()) == better.id
        old = await relay.call("tx_status", id=parked.id)
        assert old["state"] == "dropped" and "replaced by" in old["reason"]
        with pytest.raises(RpcError, match="unknown transaction"):
            await relay.call("tx_status", id=bytes(32))
        # Forwarded to the executor: a dry run, and the account as the executor has it.
        estimate = await relay.call("estimate", tx=spend(cfg, 12, 0, 5).encode())
        assert estimate["status_name"] == "SUCCESS" and estimate["gas_used"] > 0
        assert await relay.call("get_account", address=user(cfg, 12)[1]) == (
            await executor.call("get_account", address=user(cfg, 12)[1])
        )


async def test_a_batch_is_admitted_with_one_answer_per_transaction(cluster: Cluster) -> None:
    c, cfg = cluster, cluster.config
    async with clients(c) as (relay, _, _):
        first, second = spend(cfg, 14, 0, 5), spend(cfg, 14, 1, 5)
        batch = [
            first.encode(),
            second.encode(),
            first.encode(),
            spend(cfg, 14, 2, 5, price=1).encode(),
            b"\x01garbage bytes",
        ]
        results = await relay.call("submit_txs", txs=batch)
        assert results[:2] == [{"id": first.id}, {"id": second.id}]
        codes = [r["error"]["code"] for r in results[2:]]
        kinds = [r["error"]["message"].split(":")[0] for r in results[2:]]
        assert codes == [409, 400, 400] and kinds == ["duplicate", "underpriced", "malformed"]

        async def executed() -> bool:
            states = [(await relay.call("tx_status", id=t.id))["state"] for t in (first, second)]
            return states == ["executed", "executed"]

        await until(executed, 30, c, "for the batch to execute")
        with pytest.raises(RpcError, match="at most"):
            await relay.call("submit_txs", txs=[b"\x00"] * 1025)


# --- flood ---------------------------------------------------------------------------------

POOL_CAP = 40
PER_PRINCIPAL = 10


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def test_flood_keeps_the_pool_bounded_and_honest_transactions_land(
    tmp_path: Path,
) -> None:
    c = start(
        tmp_path,
        48,
        pool_max_txs=POOL_CAP,
        max_per_principal=PER_PRINCIPAL,
        bundle_max_bytes=2048,
        rate_limit=0,
    )
    cfg = c.config
    rng = random.Random(5)
    try:
        async with clients(c) as (relay, _, _):
            rss_before = rss_kb(c.procs[RELAY].pid)
            peak = {"count": 0, "bytes": 0}
            outcome: dict[bytes, tuple[int, str]] = {}  # id -> (gas price, submit result)

            async def sample() -> None:
                while True:
                    pool = await relay.call("mempool")
                    peak["count"] = max(peak["count"], pool["count"])
                    peak["bytes"] = max(peak["bytes"], pool["bytes"])
                    await trio.sleep(0.02)

            async def submit(tx: Transaction) -> None:
                try:
                    await relay.call("submit_tx", tx=tx.encode())
                    outcome[tx.id] = (tx.gas_price, "admitted")
                except RpcError as exc:
                    outcome[tx.id] = (tx.gas_price, exc.message.split(":")[0])

            # One principal: 10× the pool cap of its own nonces.
            single = [spend(cfg, 0, n, 1, price=2 + n % 3) for n in range(10 * POOL_CAP)]
            # Many principals (users 1..40), cheap; and two honest users paying more.
            many = [
                spend(cfg, p, n, 1, price=rng.randrange(1, 6))
                for n in range(PER_PRINCIPAL)
                for p in range(1, 41)
            ]
            honest = [spend(cfg, p, n, 1, price=20) for p in (45, 46) for n in range(5)]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                for tx in single:
                    await submit(tx)
                for i, tx in enumerate(many):
                    await submit(tx)
                    if i % 80 == 40:
                        for h in honest[i // 80 * 2 : i // 80 * 2 + 2]:
                            await submit(h)
                for h in honest:
                    if h.id not in outcome:
                        await submit(h)

                async def honest_executed() -> bool:
                    for h in honest:
                        state = (await relay.call("tx_status", id=h.id))["state"]
                        if state != "executed":
                            return False
                    return True

                await until(honest_executed, 90, c, "for the honest transactions")
                nursery.cancel_scope.cancel()
            rss_after = rss_kb(c.procs[RELAY].pid)
            # Bounded: never above the caps, whatever arrived.
            assert peak["count"] <= POOL_CAP and peak["count"] >= POOL_CAP // 2, peak
            singles = [outcome[tx.id][1] for tx in single]
            assert singles.count("admitted") <= PER_PRINCIPAL, singles
            assert set(singles) <= {"admitted", "nonce_too_high", "principal_limit", "pool_full"}
            assert all(outcome[h.id][1] == "admitted" for h in honest)
            # The cheapest were evicted first: every eviction is of a price below what
            # was admitted after it, and no honest (price 20) transaction was evicted.
            evicted, executed = [], []
            for tx in many + single:
                if outcome[tx.id][1] != "admitted":
                    continue
                status = await relay.call("tx_status", id=tx.id)
                if status["state"] == "dropped" and status["reason"].startswith("evicted"):
                    evicted.append(tx.gas_price)
                elif status["state"] == "executed":
                    executed.append(tx.gas_price)
            assert evicted, "a flood of 10× the cap must evict"
            assert max(evicted) < 20
            assert sum(evicted) / len(evicted) < sum(executed) / len(executed)
            refused = [o[1] for o in outcome.values() if o[1] != "admitted"]
            assert "pool_full" in refused
            mempool = await relay.call("mempool")
            assert mempool["evicted"] == len(evicted)
            print(
                f"flood: {len(outcome)} submitted, peak pool {peak}, evicted {len(evicted)}, "
                f"relay RSS {rss_before} -> {rss_after} KiB"
            )
            assert rss_after - rss_before < 100_000, (rss_before, rss_after)
    finally:
        c.stop_all()


# --- crash and restart ---------------------------------------------------------------------


async def test_killed_mid_bundle_the_relay_resumes_without_loss_or_double_execution(
    tmp_path: Path,
) -> None:
    c = start(tmp_path, 6, bundle_max_bytes=2048, max_attempts=20, fault={"crash_after_bundle": 2})
    cfg = c.config
    txs = [spend(cfg, p, n, 100 + n) for n in range(12) for p in range(6)]
    bundled_before: set[bytes] = set()
    try:
        async with clients(c) as (relay, executor, _):
            for tx in txs:
                await relay.call("submit_tx", tx=tx.encode())
            # The relay persists its second bundle, then dies before sending it.
            proc = c.procs[RELAY]
            with trio.fail_after(60):
                while proc.poll() is None:
                    for tx in txs:
                        try:
                            status = await relay.call("tx_status", id=tx.id, timeout=1)
                        except Exception:
                            break
                        if status["state"] != "pending":
                            bundled_before.add(tx.id)
                    await trio.sleep(0.05)
            assert proc.returncode == 3, "the fault hook should have fired"
            assert bundled_before, "something was acknowledged as bundled before the crash"
            c.procs.pop(RELAY)
            c.start(RELAY)
            # Once it is back, kill it again at a random moment, then restart for good.
            await until(lambda: ready(relay, executor), 60, c, "for the restarted relay")
            await trio.sleep(random.Random(3).uniform(0.2, 1.5))
            c.kill(RELAY)
            c.start(RELAY)
            await until(lambda: ready(relay, executor), 60, c, "for the relay again")

            async def all_executed() -> bool:
                for tx in txs:
                    if (await relay.call("tx_status", id=tx.id))["state"] != "executed":
                        return False
                return True

            await until(all_executed, 120, c, "for every transaction to execute")
            # Nothing twice: each id is in exactly one layer's executed list, and each
            # wallet's nonce and balance are exactly what one execution of each gives.
            applied = (await executor.call("status"))["applied_layer"]
            seen: dict[bytes, int] = {}
            for layer in range(applied + 1):
                for tx_id in (await executor.call("get_layer", layer=layer))["tx_ids"]:
                    seen[tx_id] = seen.get(tx_id, 0) + 1
            assert all(seen.get(tx.id) == 1 for tx in txs), "executed twice, or never"
            for p in range(6):
                mine = [tx for tx in txs if tx.principal == user(cfg, p)[1]]
                cost = 0
                for tx in mine:
                    receipt = (await relay.call("tx_status", id=tx.id))["receipt"]
                    assert receipt["status_name"] == "SUCCESS"
                    cost += receipt["fee"] + int.from_bytes(tx.payload.input[24:], "little")
                account = await executor.call("get_account", address=user(cfg, p)[1])
                assert account["nonce"] == len(mine)
                assert account["balance"] == cfg.athena.test_wallet_balance - cost
            status = await relay.call("status")
            assert status["bundles_created"] >= 3 and status["outstanding"] is None
    finally:
        c.stop_all()


# --- the CLI: through the relay, and the direct path around it -----------------------------


def devnet_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devnet", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )


async def test_cli_submits_through_the_relay_or_directly_with_an_l1_key(
    cluster: Cluster, tmp_path: Path
) -> None:
    c, cfg = cluster, cluster.config
    config = str(c.config_path)
    async with clients(c) as (relay, executor, smesher):
        via_relay = spend(cfg, 12, 0, 3)
        out = await trio.to_thread.run_sync(
            devnet_cli, "tx", "submit", "--config", config, "--json", via_relay.encode().hex()
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [{"id": via_relay.id.hex(), "error": None}]
        cheap = spend(cfg, 12, 1, 3, price=1)  # below this relay's minimum of 2
        refused = await trio.to_thread.run_sync(
            devnet_cli, "tx", "submit", "--config", config, cheap.encode().hex()
        )
        assert refused.returncode == 1 and f"{cheap.id.hex()} rejected: underpriced" in (
            refused.stdout
        )
        # user-0 holds SMH on L1: it bundles its own transactions and pays for them.
        key_file = tmp_path / "l1.json"
        save_key_file(key_file, cfg.network.test_key("user-0"))
        direct = [spend(cfg, 13, n, 11, price=1) for n in range(2)]  # below the relay's minimum
        payer = l1_address(cfg.network.test_key("user-0").public_key)
        before = await smesher.call("get_l1_account", address=payer)
        out = await trio.to_thread.run_sync(
            devnet_cli,
            "tx",
            "submit",
            "--config",
            config,
            "--direct",
            "--l1-key",
            str(key_file),
            "--json",
            *(tx.encode().hex() for tx in direct),
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert (
            result["txs"] == [tx.id.hex() for tx in direct] and result["nonce"] == before["nonce"]
        )

        async def landed() -> bool:
            account = await executor.call("get_account", address=user(cfg, 13)[1])
            status = await relay.call("tx_status", id=via_relay.id)
            return bool(account["nonce"] == 2 and status["state"] == "executed")

        await until(landed, 60, c, "for both paths to execute")
        after = await smesher.call("get_l1_account", address=payer)
        assert after["nonce"] == before["nonce"] + 1
        assert after["balance"] == before["balance"] - result["fee"]
