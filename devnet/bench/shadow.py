"""`devnet bench shadow`: how fast a shadow executor catches up on a recorded history.

The history is `devnet bench executor`'s (at least 50,000 wallet spends by default). Each
block gets a certificate signed by a quorum of the test validators, and an honest
executor pass (its time not measured, its claims cached with the history) supplies the
claim for every layer. The measured pass is the shadow's catch-up path: verify the
certificate, apply the layer to a fresh LevelDB with the executor's own code, and check
the claim's state and receipts roots against its own.
"""

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import plyvel

from devnet.bench.executor import CACHE_DIR, Params, bench_config, load_history, target_line
from devnet.block import Block, decode_block
from devnet.certificate import (
    KIND_PRECOMMIT,
    Certificate,
    value_id,
    verify_certificate,
    vote_signing_bytes,
)
from devnet.config import DevnetConfig
from devnet.execution.layer import ExecutorStore, apply_layer
from devnet.execution.signature_ahead import SignaturesAhead, checked_ahead, report_line
from devnet.execution.state import open_state

QUORUM_SIGNERS = 3


@dataclass
class ShadowResult:
    params: Params
    layers: int = 0
    txs: int = 0
    seconds: float = 0.0
    #: CPU time of this process over the same layers (see the executor benchmark).
    cpu_seconds: float = 0.0
    verified: int = 0
    mismatched: int = 0
    genesis_seconds: float = 0.0
    setup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: As in the executor benchmark's result.
    signatures: SignaturesAhead | None = None


def certify(block: Block, config: DevnetConfig) -> Certificate:
    """A quorum certificate for `block` signed by the first test validators."""
    vid = value_id((block.id,))
    message = vote_signing_bytes(KIND_PRECOMMIT, block.layer, 0, vid)
    keys = sorted(
        (config.smesher_key(s.name) for s in config.smeshers[:QUORUM_SIGNERS]),
        key=lambda k: k.public_key,
    )
    return Certificate(block.layer, 0, vid, tuple((k.public_key, k.sign(message)) for k in keys))


def honest_claims(
    params: Params, config: DevnetConfig, blocks: list[Block], cache_dir: Path
) -> list[tuple[bytes, bytes]]:
    """(state root, receipts root) of every layer from an executor pass, cached."""
    path = cache_dir / f"shadow-claims-{params.cache_key(config)}.msgpack"
    if path.exists():
        roots: list[tuple[bytes, bytes]] = [
            (bytes(r[0]), bytes(r[1])) for r in msgpack.unpackb(path.read_bytes())
        ]
        if len(roots) == len(blocks):
            return roots
    with tempfile.TemporaryDirectory(prefix="athena-bench-claims-") as scratch:
        db = plyvel.DB(scratch, create_if_missing=True)
        try:
            store, host = ExecutorStore(db), open_state(db)
            roots = []
            for block in blocks:
                record, _ = apply_layer(store, host, block, config)
                roots.append((record.root, record.receipts_root))
        finally:
            db.close()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgpack.packb([list(r) for r in roots], use_bin_type=True))
    return roots


def benchmark(
    params: Params, cache_dir: Path = CACHE_DIR, *, signatures_ahead: bool = True
) -> ShadowResult:
    """Catch up on the history as a shadow does; `signatures_ahead` as the node's config.

    The claims to check come from a pass without the signature helper, so a run with it
    also shows that it changes no root.
    """
    params.check()
    config = bench_config(params)
    started = time.perf_counter()
    history = load_history(params, config, cache_dir)
    blocks = [decode_block(raw) for raw in history.blocks]
    claims = honest_claims(params, config, blocks, cache_dir)
    certificates = [certify(block, config) for block in blocks]
    validators = config.validators()
    result = ShadowResult(params, setup_seconds=time.perf_counter() - started)
    with tempfile.TemporaryDirectory(prefix="athena-bench-shadow-") as scratch:
        db = plyvel.DB(scratch, create_if_missing=True)
        try:
            store, host = ExecutorStore(db), open_state(db)
            with checked_ahead("bench-shadow", signatures_ahead) as result.signatures:
                for block, cert, claim in zip(blocks, certificates, claims, strict=True):
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    if not verify_certificate(
                        cert, validators, layer=block.layer, value=(block.id,)
                    ):
                        raise RuntimeError(f"certificate of layer {block.layer} does not verify")
                    record, receipts = apply_layer(
                        store, host, block, config, ahead=result.signatures
                    )
                    if (record.root, record.receipts_root) == claim:
                        result.verified += 1
                    else:
                        result.mismatched += 1
                    elapsed = time.perf_counter() - t0
                    if block.layer == 0:
                        result.genesis_seconds = elapsed
                    else:
                        result.seconds += elapsed
                        result.cpu_seconds += time.process_time() - cpu0
                        result.layers += 1
                        result.txs += len(receipts)
        finally:
            db.close()
    return result


def report(result: ShadowResult) -> Iterator[str]:
    p = result.params
    yield (
        f"history      {p.txs:,} wallet spends, {p.accounts:,} accounts, "
        f"{p.txs_per_layer:,} txs/layer (setup, not timed: {result.setup_seconds:,.1f} s)"
    )
    yield f"genesis      layer 0: {result.genesis_seconds:,.2f} s (not in the rates)"
    yield f"verdicts     {result.verified:,} layers verified, {result.mismatched:,} mismatched"
    yield f"transactions {result.txs:,}"
    yield f"layers       {result.layers:,}"
    yield f"seconds      {result.seconds:,.2f}"
    if result.seconds:
        yield f"layers/s     {result.layers / result.seconds:,.2f}"
        yield f"tx/s         {result.txs / result.seconds:,.0f}"
        yield target_line(result.txs / result.seconds)
    cpu = result.cpu_seconds + (result.signatures.cpu_seconds if result.signatures else 0.0)
    if cpu:
        helper = ", its signature helper's included" if result.signatures else ""
        yield f"tx/s (CPU)   {result.txs / cpu:,.0f} (per second of CPU time{helper})"
    yield report_line(result.signatures)
