"""`devnet bench e2e`, setting up: the devnet (started, attached, stopped) and the wallets.

The devnet is started with `devnet up` in a subprocess, on a fresh data directory, so the
benchmark exercises what a user runs; stopping it checks that no node is left behind. The
genesis funds `user-0` … `user-9`; the bench funds further wallets from those (one spend
each) and lets them self-spawn, which is how a real user gets a wallet too.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from devnet import methods
from devnet.bench.e2e_load import submit_batch
from devnet.builtin_templates import template
from devnet.config import DevnetConfig, load_config
from devnet.ephemeral import write_config
from devnet.errors import DevnetError, RpcError
from devnet.keys import KeyPair
from devnet.orchestrator import STATE_FILE, launch_up, pid_alive, read_state, wait_up
from devnet.transaction import Transaction
from devnet.wire import RpcClient

#: A wallet spend uses about 1,800 gas (verify + spend); the limit leaves ample headroom.
SPEND_GAS = 10_000
SPAWN_GAS = 100_000
GAS_PRICE = 1
#: Coins given to each wallet the bench funds: fees for far more spends than a run makes.
FUNDING = 10**10
#: Transactions one funder sends per round, below the relay's per-principal limit.
FUNDS_PER_ROUND = 90
START_TIMEOUT = 120.0
STOP_TIMEOUT = 40.0
#: Seconds to wait for the setup transactions (and, in `e2e`, for the last of the run).
DRAIN_TIMEOUT = 60.0
QUERY_CONCURRENCY = 48


class BenchError(DevnetError):
    """The benchmark cannot run; the message says why."""


# --- the devnet ----------------------------------------------------------------------------


@dataclass
class Devnet:
    """A running devnet: its config, its `devnet.json`, and what to stop if we started it."""

    config: DevnetConfig
    state: dict[str, Any]
    supervisor: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    def endpoint(self, role: str) -> str:
        for node in self.state["nodes"]:
            if node["role"] == role:
                return str(node["endpoint"])
        raise BenchError(f"the devnet has no {role} node")

    def pids(self) -> dict[str, int]:
        return {n["name"]: int(n["pid"]) for n in self.state["nodes"] if n.get("pid")}

    def topology(self) -> str:
        roles = Counter(n["role"] for n in self.state["nodes"])
        parts = [f"{count} {role}{'s' if count > 1 else ''}" for role, count in roles.items()]
        return ", ".join(parts)


def start_devnet(config: Path, directory: Path | None) -> Devnet:
    """`devnet up` in a subprocess from a copy of the config on free ports, its data
    directory moved into `directory` (default: a new temporary one), as `scenario run`
    starts one (`devnet.ephemeral.write_config`); returns once the devnet is ready."""
    workdir = (directory or Path(tempfile.mkdtemp(prefix="athena-bench-e2e-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    if (data_dir / STATE_FILE).exists():
        raise BenchError(f"{data_dir} already holds a devnet; use --attach or another --data-dir")
    source = write_config(config, workdir)  # a bad config fails here, with the field's name
    log = workdir / "supervisor.log"
    proc = launch_up(source, log)
    devnet = Devnet(load_config(source), {"nodes": []}, proc, workdir)
    if not wait_up(proc, data_dir, START_TIMEOUT):
        stop_devnet(devnet, keep=True)
        raise BenchError(f"the devnet did not start; see {log}")
    devnet.state = read_state(data_dir)
    devnet.config = load_config(Path(devnet.state["config"]))
    return devnet


def attach_devnet(config: Path) -> Devnet:
    """The devnet running from the config's data directory (its `devnet.json`)."""
    data_dir = load_config(config).network.data_dir
    state = read_state(data_dir)
    if not pid_alive(int(state["supervisor_pid"])):
        raise BenchError(f"the devnet of {data_dir} is not running")
    return Devnet(load_config(Path(state["config"])), state)


def stop_devnet(devnet: Devnet, keep: bool) -> list[str]:
    """Stop a devnet we started and make sure none of its processes is left; the names of
    nodes that had to be killed."""
    proc = devnet.supervisor
    if proc is None:
        return []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    killed = []
    for name, pid in devnet.pids().items():
        if pid_alive(pid):
            killed.append(name)
            os.kill(pid, signal.SIGKILL)
    if devnet.workdir is not None and not keep:
        shutil.rmtree(devnet.workdir, ignore_errors=True)
    return killed


# --- wallets ------------------------------------------------------------------------------


def user_key(config: DevnetConfig, index: int) -> KeyPair:
    return config.network.test_key(f"user-{index}")


def wallet_of(config: DevnetConfig, index: int) -> bytes:
    return user_key(config, index).wallet_address(template("wallet").address)


async def query_many(
    client: RpcClient, method: str, param: str, keys: list[bytes]
) -> list[dict[str, Any] | None]:
    """One query per key, concurrently; None where the node answers 404."""
    out: list[dict[str, Any] | None] = [None] * len(keys)
    limit = trio.CapacityLimiter(QUERY_CONCURRENCY)

    async def one(i: int) -> None:
        async with limit:
            try:
                out[i] = await client.request(method, {param: keys[i]})
            except RpcError as exc:
                if exc.code != 404:
                    raise

    async with trio.open_nursery() as nursery:
        for i in range(len(keys)):
            nursery.start_soon(one, i)
    return out


async def accounts(client: RpcClient, addresses: list[bytes]) -> list[dict[str, Any]]:
    views = await query_many(client, "get_account", "address", addresses)
    return [v if v is not None else {"exists": False, "nonce": 0, "balance": 0} for v in views]


async def submit_all(relay: RpcClient, raws: list[bytes], batched: bool) -> None:
    """Submit setup transactions; any refusal but a duplicate is an error."""
    for start in range(0, len(raws), 200):
        results = await submit_batch(relay, raws[start : start + 200], batched)
        for result in results:
            error = result.get("error")
            if error is not None and int(error["code"]) != 409:
                raise BenchError(f"a setup transaction was refused: {error['message']}")


async def wait_until(what: str, check: Any, timeout: float = DRAIN_TIMEOUT) -> None:
    with trio.move_on_after(timeout):
        while not await check():
            await trio.sleep(0.5)
        return
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def signed(
    config: DevnetConfig, index: int, nonce: int, payload: Any, gas: int, spawn: bool = False
) -> bytes:
    key = user_key(config, index)
    tx = Transaction(
        wallet_of(config, index),
        nonce,
        gas,
        GAS_PRICE,
        payload,
        template("wallet").address if spawn else None,
    )
    return tx.sign(key, config.network.genesis_id).encode()


def spawned(view: dict[str, Any]) -> bool:
    """A funded address exists before its self-spawn; a spawned one has its template."""
    return bool(view["exists"]) and view.get("template") is not None


async def fund(
    config: DevnetConfig,
    relay: RpcClient,
    executor: RpcClient,
    targets: list[int],
    funders: dict[int, int],
    batched: bool,
) -> None:
    """Spends of `FUNDING` from the funders (index -> next nonce, advanced here) to the
    targets' wallet addresses, until the executor shows them funded."""
    addresses = [wallet_of(config, i) for i in targets]
    order = sorted(funders)
    raws = []
    for j, address in enumerate(addresses):
        funder = order[j % len(order)]
        payload = methods.spend(address, FUNDING)
        raws.append(signed(config, funder, funders[funder], payload, SPEND_GAS))
        funders[funder] += 1
    await submit_all(relay, raws, batched)

    async def funded() -> bool:
        return all(v["balance"] >= FUNDING for v in await accounts(executor, addresses))

    await wait_until("the new wallets to be funded", funded)


async def spawn(
    config: DevnetConfig, relay: RpcClient, executor: RpcClient, targets: list[int], batched: bool
) -> None:
    """The targets' self-spawns, until the executor shows them spawned."""
    addresses = [wallet_of(config, i) for i in targets]
    raws = [
        signed(config, i, 0, methods.spawn_wallet(user_key(config, i).public_key), SPAWN_GAS, True)
        for i in targets
    ]
    await submit_all(relay, raws, batched)

    async def done() -> bool:
        return all(spawned(v) for v in await accounts(executor, addresses))

    await wait_until("the new wallets to be spawned", done)


async def ensure_wallets(
    config: DevnetConfig, relay: RpcClient, executor: RpcClient, count: int, batched: bool
) -> tuple[list[tuple[int, int]], int]:
    """(index, next nonce) of wallets user-0 … user-(count-1), funding and spawning those
    that are not spawned yet; and how many that was."""
    addresses = [wallet_of(config, i) for i in range(count)]
    views = await accounts(executor, addresses)
    missing = [i for i, v in enumerate(views) if not spawned(v)]
    poor = [i for i in missing if int(views[i]["balance"]) < FUNDING // 2]
    funders = {
        i: int(v["nonce"]) for i, v in enumerate(views) if spawned(v) and v["balance"] > FUNDING
    }
    if poor and not funders:
        raise BenchError("no existing wallet has the coins to fund the others")
    step = FUNDS_PER_ROUND * max(1, len(funders))
    for start in range(0, len(poor), step):
        await fund(config, relay, executor, poor[start : start + step], funders, batched)
    for start in range(0, len(missing), 1000):
        await spawn(config, relay, executor, missing[start : start + 1000], batched)
    views = await accounts(executor, addresses)
    return [(i, int(v["nonce"])) for i, v in enumerate(views)], len(missing)
