"""`devnet bench e2e`: the whole devnet under a sustained load of signed wallet spends.

    devnet bench e2e [--seconds 60] [--wallets 200] [--config FILE] [--attach]

1. **Devnet** (`e2e_setup`). Started from the config in a fresh data directory (`devnet up`
   in a subprocess, stopped at the end with every node it started), or, with `--attach`,
   the one already running from the config's data directory (its `devnet.json`).
2. **Wallets** (`e2e_setup`, not measured). The genesis funds `user-0` … `user-9`; further
   wallets `user-10` … are funded by spends from those and then self-spawn.
3. **Load** (`e2e_load`). A separate process signs spends ahead (not measured), then
   submits them through the relay as fast as it acknowledges them, with a bounded number
   in flight.
4. **Measurement**, here, while the load runs: every layer the executor applies
   (`subscribe_layers`: which transactions, when); twice a layer the last certified layer
   and the executor's and the shadow's applied and verified layers; the CPU time of every
   process (`/proc/PID/stat`; a node's helper process counts as `NODE/helper`) and of
   the machine.
5. **Checks.** Every acknowledged transaction has a successful receipt and appears in an
   applied layer, every wallet's nonce advanced by exactly the number of its acknowledged
   transactions (so nothing ran twice or without being acknowledged), and the shadow
   executor verified the claim of every layer of the run without a divergence.

Latency is from the moment the load process sent a transaction to the moment the layer
that executed it was reported (when its receipt exists), in milliseconds and in layers
(executed layer − the layer at submission). Peak RSS is each node's (and helper's) VmHWM
from /proc. The printed report is `e2e_report`'s.
"""

import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import trio

from athena_vm import StatusCode
from devnet.bench.e2e_load import LoadSpec
from devnet.bench.e2e_load import main as load_main
from devnet.bench.e2e_report import report
from devnet.bench.e2e_setup import (
    DRAIN_TIMEOUT,
    GAS_PRICE,
    SPEND_GAS,
    BenchError,
    Devnet,
    accounts,
    attach_devnet,
    ensure_wallets,
    query_many,
    start_devnet,
    stop_devnet,
    wallet_of,
)
from devnet.config import DevnetConfig
from devnet.errors import RpcError, WireError
from devnet.wire import RpcClient

__all__ = ["BenchError", "Outcome", "Params", "report", "run"]

DEFAULT_CONFIG = Path("configs/devnet.toml")
#: Lags are sampled twice a layer.
SAMPLE_EVERY = 0.5


@dataclass(frozen=True)
class Params:
    config: Path = DEFAULT_CONFIG
    seconds: float = 60.0
    wallets: int = 200
    attach: bool = False
    #: Transactions submitted and not yet executed, at most (the load's window): the
    #: target rate × the target latency (1,000 tx/s × 3 s), so that a network slower than
    #: the target shows up as a lower rate rather than as an ever-longer queue.
    inflight: int = 3000
    #: Transactions per `submit_txs` call.
    batch: int = 200
    connections: int = 4
    #: Submissions per second at most (0: as fast as the relay acknowledges).
    rate: float = 0.0
    #: Where the started devnet keeps its data (default: a new temporary directory).
    data_dir: Path | None = None
    #: Keep the started devnet's data directory (logs included) after the run.
    keep: bool = False
    #: Record a py-spy profile of every node into this directory during the load.
    profile_dir: Path | None = None
    #: Spends per second to sign ahead for (0: sign while running, on the devnet's cores).
    presign_rate: float = 1200.0

    def check(self) -> None:
        if self.seconds <= 0:
            raise BenchError("--seconds must be positive")
        if not 2 <= self.wallets <= 10_000:
            raise BenchError("--wallets must be between 2 and 10,000")
        if self.inflight < 1 or self.batch < 1 or self.connections < 1:
            raise BenchError("--inflight, --batch and --connections must be at least 1")


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    certified: int
    executor: int
    shadow: int
    verified: int


@dataclass
class Recorder:
    """What the measuring process sees while the load runs."""

    #: layer -> (unix time its record arrived, its transaction ids)
    layers: dict[int, tuple[float, list[bytes]]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)


async def record_layers(executor: RpcClient, recorder: Recorder) -> None:
    """Every layer the executor applies, with the time its record (its receipts) appeared."""
    while True:
        try:
            async with executor.subscribe("subscribe_layers") as layers:
                async for record in layers:
                    recorder.layers[int(record["layer"])] = (time.time(), list(record["tx_ids"]))
        except WireError:
            await trio.sleep(0.2)


def _layer(value: Any) -> int:
    return -1 if value is None else int(value)


async def sample_lags(
    smesher: RpcClient, executor: RpcClient, shadow: RpcClient, recorder: Recorder
) -> None:
    """The last certified layer and how far the executor and the shadow are behind it."""
    while True:
        try:
            l1 = await smesher.call("status")
            ex = await executor.call("status")
            sh = await shadow.call("status")
            recorder.samples.append(
                Sample(
                    time.time(),
                    _layer(l1["last_certified"]),
                    _layer(ex["applied_layer"]),
                    _layer(sh["applied_layer"]),
                    _layer(sh["verified_up_to"]),
                )
            )
        except WireError:
            pass
        await trio.sleep(SAMPLE_EVERY)


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_profilers(
    devnet: Devnet, directory: Path, seconds: float
) -> list[subprocess.Popen[bytes]]:
    """`py-spy record` on every node for the load's duration (collapsed stacks, one file
    per node); the caller waits for them."""
    tool = py_spy()
    if tool is None:
        raise BenchError("--profile needs py-spy (pip install py-spy)")
    directory.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in devnet.pids().items():
        procs.append(
            subprocess.Popen(
                [
                    tool,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(math.ceil(seconds)),
                    "--rate",
                    "50",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(directory / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


class LoadProcess:
    """The load in its own process: it signs ahead, says so, starts when told, and leaves
    its results in a file."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=load_main, args=(spec, child), name="bench-load"
        )
        self.presigned = 0
        self.presign_seconds = 0.0

    async def start(self, pids: dict[str, int]) -> float:
        """Start it, wait until it has signed ahead; the unix time it starts submitting
        at. Its pid goes into `pids` as "load"."""
        self.process.start()
        if self.process.pid is not None:
            pids["load"] = self.process.pid
        ready = await trio.to_thread.run_sync(self._ready, abandon_on_cancel=True)
        if not ready:
            await self.stop()
            raise BenchError(f"the load process failed (exit code {self.process.exitcode})")
        start_at = time.time() + 1.0
        self.conn.send(start_at)
        return start_at

    def _ready(self) -> bool:
        while self.process.is_alive():
            if self.conn.poll(0.2):
                self.presigned, self.presign_seconds = self.conn.recv()
                return True
        return False

    async def finish(self) -> dict[str, Any]:
        """Wait for the run to end; its results."""
        try:
            await trio.to_thread.run_sync(self.process.join, abandon_on_cancel=True)
        finally:
            await self.stop()
        if self.process.exitcode != 0:
            raise BenchError(f"the load process failed (exit code {self.process.exitcode})")
        path = Path(self.spec.result_path)
        result: dict[str, Any] = msgpack.unpackb(path.read_bytes(), raw=False)
        result["presign_seconds"] = self.presign_seconds
        return result

    async def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


@dataclass
class CpuUse:
    """Cores used during the load, per process and by the whole machine."""

    cores: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    machine_cores: float = 0.0


async def meter_cpu(pids: dict[str, int], start_at: float, seconds: float, out: CpuUse) -> None:
    """CPU time of every process (nodes, the load) over the load's run, from /proc."""
    await trio.sleep(max(0.0, start_at - time.time()))
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy0, total0 = machine_cpu()
    started = time.monotonic()
    await trio.sleep(seconds)
    elapsed = time.monotonic() - started
    for name, pid in pids.items():
        used, then = cpu_seconds(pid), before.get(name)
        if used is not None and then is not None:
            out.cores[name] = (used - then) / elapsed
    busy1, total1 = machine_cpu()
    out.machine_busy = (busy1 - busy0) / elapsed
    out.machine_cores = (total1 - total0) / elapsed


def with_helpers(pids: dict[str, int]) -> dict[str, int]:
    """The nodes and their helper processes (an executor's or shadow's signature checker,
    named `NODE/helper`), so that their CPU and memory are counted too."""
    out = dict(pids)
    for name, pid in pids.items():
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8")
        except OSError:
            continue
        for i, child in enumerate(children.split()):
            out[f"{name}/helper" + (f"-{i}" if i else "")] = int(child)
    return out


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MB, or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"(?m)^VmHWM:\s+(\d+)\s+kB", status)
    return int(match.group(1)) / 1024 if match else None


@dataclass
class Outcome:
    """Everything the report needs: what was sent, what ran, what the checks found."""

    params: Params
    config: DevnetConfig
    topology: str
    batched: bool
    funded: int
    funding_seconds: float
    load: dict[str, Any]
    recorder: Recorder
    #: The layers of the run: from the one the load started in to the last that ran ours.
    first_layer: int
    last_layer: int
    #: The first layer in which each acknowledged transaction appeared.
    executed_in: dict[bytes, int]
    #: Acknowledged transactions that appear in more than one layer (re-included).
    repeated: int
    #: Acknowledged transactions without a successful receipt: id -> why.
    failed: dict[bytes, str]
    #: Wallets whose nonce did not advance by their acknowledged count: (index, expected, got)
    nonce_mismatches: list[tuple[int, int, int]]
    #: Layers of the run without a `verified` verdict: layer -> what the shadow says.
    unverified: dict[int, str]
    #: What the shadow reported as divergent (wrong root, missing, late or foreign claim).
    divergences: list[dict[str, Any]]
    rss_mb: dict[str, float | None]
    cpu: CpuUse
    #: The devnet's node processes (what the run leaves behind, if anything, is in `killed`).
    pids: dict[str, int] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return not (
            self.failed
            or self.nonce_mismatches
            or self.unverified
            or self.divergences
            or self.killed
        )


async def wait_executed(recorder: Recorder, ids: set[bytes]) -> None:
    """Until every id appears in a recorded layer, or `DRAIN_TIMEOUT` (the checks then
    report what is missing)."""
    with trio.move_on_after(DRAIN_TIMEOUT):
        while True:
            seen = {t for _, txs in recorder.layers.values() for t in txs}
            if ids <= seen:
                return
            await trio.sleep(0.5)


async def wait_verified(shadow: RpcClient, layer: int) -> None:
    with trio.move_on_after(DRAIN_TIMEOUT):
        while _layer((await shadow.call("status"))["verified_up_to"]) < layer:
            await trio.sleep(0.5)


async def fill_gaps(executor: RpcClient, recorder: Recorder, first: int, last: int) -> None:
    """Layers the subscription missed (a reconnection), read back from the executor."""
    for layer in range(first, last + 1):
        if layer not in recorder.layers:
            record = await executor.call("get_layer", layer=layer)
            recorder.layers[layer] = (time.time(), list(record["tx_ids"]))


def first_layers(recorder: Recorder) -> tuple[dict[bytes, int], Counter[bytes]]:
    executed_in: dict[bytes, int] = {}
    appearances: Counter[bytes] = Counter()
    for layer in sorted(recorder.layers):
        for tx_id in recorder.layers[layer][1]:
            executed_in.setdefault(tx_id, layer)
            appearances[tx_id] += 1
    return executed_in, appearances


async def check_receipts(executor: RpcClient, ids: list[bytes]) -> dict[bytes, str]:
    """Acknowledged ids without a successful receipt, with the reason."""
    receipts = await query_many(executor, "get_receipt", "tx_id", ids)
    failed = {}
    for tx_id, receipt in zip(ids, receipts, strict=True):
        if receipt is None:
            failed[tx_id] = "no receipt"
        elif receipt["status"] != StatusCode.SUCCESS:
            failed[tx_id] = f"{StatusCode(receipt['status']).name}: {receipt.get('reason')}"
    return failed


async def check_nonces(
    config: DevnetConfig,
    executor: RpcClient,
    wallets: list[tuple[int, int]],
    acked: list[list[Any]],
) -> list[tuple[int, int, int]]:
    per_wallet = Counter(int(entry[1]) for entry in acked)
    views = await accounts(executor, [wallet_of(config, i) for i, _ in wallets])
    mismatches = []
    for (index, start), view in zip(wallets, views, strict=True):
        expected = start + per_wallet[index]
        if int(view["nonce"]) != expected:
            mismatches.append((index, expected, int(view["nonce"])))
    return mismatches


async def check_verdicts(shadow: RpcClient, first: int, last: int) -> dict[int, str]:
    unverified = {}
    for layer in range(first, last + 1):
        try:
            verdict = await shadow.call("get_verdict", layer=layer)
        except RpcError as exc:
            unverified[layer] = exc.message
            continue
        if verdict["kind"] != "verified":
            unverified[layer] = f"{verdict['kind']}: {verdict['reason']}"
    return unverified


def load_spec(
    params: Params, devnet: Devnet, wallets: list[tuple[int, int]], path: Path
) -> LoadSpec:
    config = devnet.config
    return LoadSpec(
        relay=devnet.endpoint("relay"),
        executor=devnet.endpoint("executor"),
        genesis_id=config.network.genesis_id,
        key_phrase=config.network.key_phrase,
        wallets=tuple(wallets),
        seconds=params.seconds,
        inflight=params.inflight,
        per_wallet=max(1, config.relay.max_per_principal - 10),
        batch=params.batch,
        connections=params.connections,
        gas_limit=SPEND_GAS,
        gas_price=max(GAS_PRICE, config.relay.min_gas_price),
        result_path=str(path),
        rate=params.rate,
        presign=math.ceil(params.seconds * params.presign_rate / len(wallets))
        + config.relay.max_per_principal,
    )


async def measure(params: Params, devnet: Devnet) -> Outcome:
    config = devnet.config
    async with (
        RpcClient(devnet.endpoint("relay"), node="bench", timeout=30) as relay,
        RpcClient(devnet.endpoint("executor"), node="bench", timeout=30) as executor,
        RpcClient(devnet.endpoint("shadow"), node="bench", timeout=30) as shadow,
        RpcClient(devnet.endpoint("smesher"), node="bench", timeout=30) as smesher,
    ):
        batched = "submit_txs" in (await relay.call("rpc.methods"))["methods"]
        started = time.monotonic()
        wallets, funded = await ensure_wallets(config, relay, executor, params.wallets, batched)
        funding_seconds = time.monotonic() - started
        recorder = Recorder()
        with tempfile.TemporaryDirectory(prefix="athena-bench-load-") as scratch:
            spec = load_spec(params, devnet, wallets, Path(scratch) / "load.msgpack")
            cpu, pids = CpuUse(), devnet.pids()
            process = LoadProcess(spec)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(record_layers, executor, recorder)
                nursery.start_soon(sample_lags, smesher, executor, shadow, recorder)
                start_at = await process.start(pids)
                first_layer = config.network.layer_at(int(start_at * 1000))
                metered = with_helpers(pids)  # the load's pid is among them now
                nursery.start_soon(meter_cpu, metered, start_at, params.seconds, cpu)
                profilers = (
                    start_profilers(devnet, params.profile_dir, params.seconds + 1)
                    if params.profile_dir
                    else []
                )
                load = await process.finish()
                ids = {bytes(entry[0]) for entry in load["acked"]}
                await wait_executed(recorder, ids)
                executed_in, _ = first_layers(recorder)
                last_layer = max(
                    (executed_in[t] for t in ids if t in executed_in), default=first_layer
                )
                await wait_verified(shadow, last_layer)
                nursery.cancel_scope.cancel()
        for proc in profilers:
            proc.wait()
        await fill_gaps(executor, recorder, first_layer, last_layer)
        executed_in, appearances = first_layers(recorder)
        acked_ids = [bytes(entry[0]) for entry in load["acked"]]
        failed = await check_receipts(executor, acked_ids)
        nonce_mismatches = await check_nonces(config, executor, wallets, load["acked"])
        unverified = await check_verdicts(shadow, first_layer, last_layer)
        divergences = list(await shadow.call("list_divergences"))
    processes = with_helpers(devnet.pids())
    return Outcome(
        params,
        config,
        devnet.topology(),
        batched,
        funded,
        funding_seconds,
        load,
        recorder,
        first_layer,
        last_layer,
        executed_in,
        sum(1 for t in acked_ids if appearances[t] > 1),
        failed,
        nonce_mismatches,
        unverified,
        divergences,
        {name: peak_rss_mb(pid) for name, pid in processes.items()},
        cpu,
        processes,
    )


def run(params: Params) -> Outcome:
    """Start (or attach to) the devnet, run the load, measure, check, stop what we started."""
    params.check()
    if params.attach:
        devnet = attach_devnet(params.config)
    else:
        devnet = start_devnet(params.config, params.data_dir)
    try:
        outcome = trio.run(measure, params, devnet)
    except BaseException:
        stop_devnet(devnet, keep=True)  # its logs say what went wrong
        if devnet.workdir is not None:
            print(f"the devnet's data and logs are kept in {devnet.workdir}", file=sys.stderr)
        raise
    outcome.killed = stop_devnet(devnet, keep=params.keep)
    return outcome
