"""`devnet bench executor`: how fast the executor applies layers of wallet spends.

A history is generated first, deterministically from a seed: a configuration whose genesis
spawns and funds `accounts` test wallets (`user-0` …), then blocks of signed wallet spends
between them (each principal's nonces in order across layers, recipients drawn at random),
carried in bundles signed by a relay key. Key derivation and signing are not measured: the
history is built before the clock starts and cached under the system temp dir, keyed by
the parameters, so a re-run starts replaying at once.

The replay is the executor's real path: every block goes through `apply_layer` into a fresh
LevelDB (state, state tree nodes, receipts, layer record in one write batch per layer) on
one long-lived LevelDB-backed host, as the executor process does. Layer 0 applies genesis
(the built-in templates and all the wallets); it is timed on its own and kept out of the
rates. A run posts figures only if every receipt is SUCCESS and every principal's nonce
ends where the history says it must.
"""

import cProfile
import io
import os
import pstats
import random
import resource
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import msgpack
import plyvel

from devnet.block import Block, decode_block
from devnet.builtin_templates import template
from devnet.bundle import Bundle
from devnet.config import DevnetConfig, parse_config
from devnet.errors import DevnetError
from devnet.execution.layer import ExecutorStore, apply_layer
from devnet.execution.signature_ahead import SignaturesAhead, checked_ahead, report_line
from devnet.execution.state import open_state
from devnet.methods import spend
from devnet.transaction import Transaction

#: Bump when the generated history changes shape, so stale caches are not reused.
HISTORY_VERSION = 1
#: A wallet spend uses about 1,800 gas (verify + spend); the limit leaves ample headroom.
GAS_LIMIT = 10_000
GAS_PRICE = 1
MAX_AMOUNT = 1_000
#: Transactions per bundle, well under the 4 MiB a block's bundle may decode to.
BUNDLE_TXS = 5_000
DEFAULT_BLOCK_GAS_LIMIT = 100_000_000
RELAY = "relay-0"
CACHE_DIR = Path(tempfile.gettempdir()) / "athena-devnet-bench"
TOP_FUNCTIONS = 15
#: The replay rate the executor and a catching-up shadow are built to sustain.
TARGET_TPS = 3_000


class BenchError(DevnetError):
    """The benchmark cannot run with these parameters, or its replay went wrong."""


@dataclass(frozen=True)
class Params:
    txs: int = 50_000
    accounts: int = 10_000
    txs_per_layer: int = 1_000
    seed: int = 1

    def check(self) -> None:
        if self.txs < 1:
            raise BenchError("--txs must be at least 1")
        if not 2 <= self.accounts <= 100_000:
            raise BenchError("--accounts must be between 2 and 100,000")
        if self.txs_per_layer < 1:
            raise BenchError("--txs-per-layer must be at least 1")

    @property
    def layers(self) -> int:
        """Layers carrying transactions (1 … layers); layer 0 is genesis."""
        return -(-self.txs // self.txs_per_layer)

    def cache_key(self, config: DevnetConfig) -> str:
        """Names a cached history: the parameters, and what the signed bytes depend on.

        The wallet template's code fixes every address and the first test key stands for
        the key derivation, so a history signed against older templates or keys (which
        would replay as all-REJECTED) is never picked up.
        """
        wallet = template("wallet").address
        first_key = config.network.test_key("user-0").public_key
        text = (
            f"v{HISTORY_VERSION}:{self.txs}:{self.accounts}:{self.txs_per_layer}:{self.seed}:"
            f"{wallet.hex()}:{first_key.hex()}:{config.network.genesis_id.hex()}"
        )
        return blake3.blake3(text.encode()).hexdigest()[:16]


def bench_config(params: Params) -> DevnetConfig:
    """A one-smesher devnet whose genesis spawns and funds `params.accounts` wallets."""
    return parse_config(
        {
            "network": {
                "genesis_time": 1_700_000_000,
                "genesis_extra": "bench-executor",
                "key_phrase": "bench-executor",
            },
            "l1": {
                "block_gas_limit": max(DEFAULT_BLOCK_GAS_LIMIT, params.txs_per_layer * GAS_LIMIT),
            },
            "smesher": [{"name": "smesher-0", "port": 7100}],
            "executor": {"claims": False},
            "athena": {"test_wallets": params.accounts},
        }
    )


@dataclass(frozen=True)
class History:
    """Encoded blocks, genesis first, and the nonce each principal must end at."""

    blocks: tuple[bytes, ...]
    final_nonces: dict[bytes, int]
    cached: bool = False
    seconds: float = 0.0


def generate(params: Params, config: DevnetConfig) -> History:
    """Blocks 0 … layers of the seeded history (no clock: this is not what is measured)."""
    rng = random.Random(params.seed)
    wallet = template("wallet").address
    genesis_id = config.network.genesis_id
    keys = [config.network.test_key(f"user-{i}") for i in range(params.accounts)]
    addresses = [key.wallet_address(wallet) for key in keys]
    relay = config.network.test_key(RELAY)
    beneficiary = relay.wallet_address(wallet)
    nonces = [0] * params.accounts
    blocks = [Block(0).encoded]
    relay_nonce = 0
    remaining = params.txs
    for layer in range(1, params.layers + 1):
        raws = []
        for _ in range(min(params.txs_per_layer, remaining)):
            sender = rng.randrange(params.accounts)
            recipient = rng.randrange(params.accounts - 1)
            recipient += recipient >= sender  # anyone but the sender
            tx = Transaction(
                addresses[sender],
                nonces[sender],
                GAS_LIMIT,
                GAS_PRICE,
                spend(addresses[recipient], rng.randint(1, MAX_AMOUNT)),
            )
            raws.append(tx.sign(keys[sender], genesis_id).encode())
            nonces[sender] += 1
        remaining -= len(raws)
        bundles = []
        for start in range(0, len(raws), BUNDLE_TXS):
            chunk = tuple(raws[start : start + BUNDLE_TXS])
            bundle = Bundle(relay.public_key, relay_nonce, beneficiary, chunk)
            bundles.append(bundle.sign(relay, genesis_id))
            relay_nonce += 1
        bundles.sort(key=lambda b: b.id)
        blocks.append(Block(layer, tuple(bundles)).encoded)
    final = {addresses[i]: n for i, n in enumerate(nonces) if n}
    return History(tuple(blocks), final)


def load_history(params: Params, config: DevnetConfig, cache_dir: Path | None) -> History:
    """The history from the cache, or generated (and cached, when `cache_dir` is given)."""
    path = None if cache_dir is None else cache_dir / f"executor-{params.cache_key(config)}.msgpack"
    if path is not None and path.exists():
        started = time.perf_counter()
        try:
            doc = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
            if doc["params"] == [params.txs, params.accounts, params.txs_per_layer, params.seed]:
                return History(
                    tuple(doc["blocks"]),
                    dict(doc["nonces"]),
                    cached=True,
                    seconds=time.perf_counter() - started,
                )
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            pass  # a damaged or foreign file: generate afresh and overwrite it
    started = time.perf_counter()
    history = generate(params, config)
    seconds = time.perf_counter() - started
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "params": [params.txs, params.accounts, params.txs_per_layer, params.seed],
            "blocks": list(history.blocks),
            "nonces": history.final_nonces,
        }
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_bytes(msgpack.packb(doc, use_bin_type=True))
        os.replace(scratch, path)
    return History(history.blocks, history.final_nonces, cached=False, seconds=seconds)


@dataclass
class Result:
    params: Params
    history: History
    db_path: Path
    genesis_seconds: float = 0.0
    layer_seconds: list[float] = field(default_factory=list)
    #: CPU time of this process (all its threads) over the same layers: on a machine
    #: shared with other work it moves far less than the wall clock.
    cpu_seconds: float = 0.0
    txs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    nonce_mismatches: int = 0
    root: bytes = b""
    peak_rss_kib: int = 0
    profile: list[str] = field(default_factory=list)
    #: The closed signature helper (its figures and CPU time, counted in the CPU rate), or
    #: None when every signature was verified in place.
    signatures: SignaturesAhead | None = None

    @property
    def layers(self) -> int:
        return len(self.layer_seconds)

    @property
    def seconds(self) -> float:
        return sum(self.layer_seconds)

    @property
    def succeeded(self) -> int:
        return self.statuses["SUCCESS"]

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "SUCCESS")

    @property
    def ok(self) -> bool:
        """Every generated transaction executed and succeeded, and the nonces agree."""
        return (
            self.failed == 0
            and self.succeeded == self.params.txs
            and self.layers == self.params.layers
            and self.nonce_mismatches == 0
        )

    @property
    def tx_per_second(self) -> float:
        return self.txs / self.seconds if self.seconds else 0.0

    @property
    def layers_per_second(self) -> float:
        return self.layers / self.seconds if self.seconds else 0.0

    @property
    def tx_per_cpu_second(self) -> float:
        cpu = self.cpu_seconds + (self.signatures.cpu_seconds if self.signatures else 0.0)
        return self.txs / cpu if cpu else 0.0


@contextmanager
def _database(keep: Path | None) -> Iterator[Path]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="athena-bench-executor-") as scratch:
            yield Path(scratch) / "state"
        return
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise BenchError(f"--keep {keep}: must be a new or empty directory")
    keep.mkdir(parents=True, exist_ok=True)
    yield keep


def _peak_rss_kib() -> int:
    """ru_maxrss of this process (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _profile_lines(profiler: cProfile.Profile) -> list[str]:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(pstats.SortKey.CUMULATIVE).print_stats(TOP_FUNCTIONS)
    lines = out.getvalue().splitlines()
    # Drop pstats' preamble up to the summary line ("N function calls … in S seconds").
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return [line.rstrip() for line in lines[start:] if line.strip()]


def replay(
    params: Params,
    config: DevnetConfig,
    history: History,
    db_path: Path,
    *,
    profile: bool = False,
    signatures_ahead: bool = True,
) -> Result:
    """Apply every block of `history` to a fresh LevelDB at `db_path` and measure it.

    With `signatures_ahead`, wallet signatures are checked in a helper process while each
    layer executes, as the executor node does (`devnet.execution.signature_ahead`).
    """
    blocks = [decode_block(raw) for raw in history.blocks]  # what the executor receives
    result = Result(params, history, db_path)
    profiler = cProfile.Profile() if profile else None
    db = plyvel.DB(str(db_path), create_if_missing=True, error_if_exists=True)
    try:
        store = ExecutorStore(db)
        host = open_state(db)
        with checked_ahead("bench", signatures_ahead) as result.signatures:
            for block in blocks:
                started, cpu_started = time.perf_counter(), time.process_time()
                if profiler is not None and block.layer > 0:
                    profiler.enable()
                _, receipts = apply_layer(store, host, block, config, ahead=result.signatures)
                if profiler is not None:
                    profiler.disable()
                elapsed = time.perf_counter() - started
                if block.layer == 0:
                    result.genesis_seconds = elapsed
                else:
                    result.layer_seconds.append(elapsed)
                    result.cpu_seconds += time.process_time() - cpu_started
                    result.txs += len(receipts)
                result.statuses.update(str(r["status_name"]) for r in receipts)
        result.root = store.root()
        result.nonce_mismatches = sum(
            host.nonce(address) != nonce for address, nonce in history.final_nonces.items()
        )
    finally:
        db.close()
    result.peak_rss_kib = _peak_rss_kib()
    if profiler is not None:
        result.profile = _profile_lines(profiler)
    return result


def benchmark(
    params: Params,
    *,
    keep: Path | None = None,
    profile: bool = False,
    cache_dir: Path | None = None,
    signatures_ahead: bool = True,
) -> Result:
    """Generate (or load from `cache_dir`) the history, then replay it into a fresh database."""
    params.check()
    config = bench_config(params)
    history = load_history(params, config, cache_dir)
    with _database(keep) as db_path:
        return replay(
            params, config, history, db_path, profile=profile, signatures_ahead=signatures_ahead
        )


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def report(result: Result) -> Iterator[str]:
    """The figures as printed lines; rates only for a run whose receipts all succeeded."""
    p, h = result.params, result.history
    verb = "loaded from cache" if h.cached else "generated (not timed)"
    source = f"{verb} in {_fmt_seconds(h.seconds)}"
    yield (
        f"history      {p.txs:,} wallet spends, {p.accounts:,} accounts, "
        f"{p.txs_per_layer:,} txs/layer, seed {p.seed}: {source}"
    )
    genesis = _fmt_seconds(result.genesis_seconds)
    yield f"genesis      layer 0, {p.accounts:,} wallets spawned: {genesis} (not in the rates)"
    other = ", ".join(f"{n:,} {s}" for s, n in sorted(result.statuses.items()) if s != "SUCCESS")
    yield f"receipts     {result.succeeded:,} SUCCESS, {result.failed:,} other" + (
        f" ({other})" if other else ""
    )
    if not result.ok:
        return
    per_layer = result.layer_seconds
    yield f"transactions {result.txs:,}"
    yield f"layers       {result.layers:,} (1 … {result.layers})"
    yield f"seconds      {result.seconds:,.2f} (layers ≥ 1, apply_layer only)"
    yield f"tx/s         {result.tx_per_second:,.0f}"
    helper = " and its signature helper's" if result.signatures else ""
    cpu_rate = f"{result.tx_per_cpu_second:,.0f}"
    yield f"tx/s (CPU)   {cpu_rate} (per second of this process's{helper} CPU time)"
    yield report_line(result.signatures)
    yield f"layers/s     {result.layers_per_second:,.2f}"
    yield target_line(result.tx_per_second)
    yield (
        f"per layer    median {_fmt_seconds(statistics.median(per_layer))}, "
        f"max {_fmt_seconds(max(per_layer))}"
    )
    yield f"peak RSS     {result.peak_rss_kib / 1024:,.1f} MiB"
    yield f"root         {result.root.hex()}"
    if result.profile:
        yield "profile      layers ≥ 1 under cProfile (the rates above include its overhead)"
        yield from result.profile


def target_line(tx_per_second: float) -> str:
    met = "met" if tx_per_second >= TARGET_TPS else "MISSED"
    return f"target       ≥ {TARGET_TPS:,} tx/s {met}"


def failure(result: Result) -> str:
    """Why a run posts no figures."""
    reasons = []
    if result.failed or result.succeeded != result.params.txs:
        reasons.append(f"{result.succeeded:,} of {result.params.txs:,} transactions succeeded")
    if result.layers != result.params.layers:
        reasons.append(f"{result.layers} of {result.params.layers} layers applied")
    if result.nonce_mismatches:
        reasons.append(f"{result.nonce_mismatches:,} principals end at the wrong nonce")
    return "broken run, no figures: " + "; ".join(reasons)
