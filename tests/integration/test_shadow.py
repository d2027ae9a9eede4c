"""Shadow executors against real processes: attach late, catch cheats, agree, survive kill -9."""

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet import methods
from devnet.builtin_templates import template
from devnet.bundle import Bundle
from devnet.config import DevnetConfig, load_config
from devnet.l1 import l1_address
from devnet.transaction import Transaction, decode_transaction
from devnet.wire import call_sync
from tests.integration.cluster import ROOT, Cluster, free_ports, write_config

SMESHERS = [f"smesher-{i}" for i in range(4)]


class Shadows:
    """Shadow executor processes beside a cluster, each with its own name, port and data."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> None:
        port = self.ports.setdefault(name, free_ports(1)[0])
        with open(self.cluster.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shadow_executor",
                    "--config",
                    str(self.cluster.config_path),
                    "--node",
                    name,
                    "--port",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(10)

    def call(self, name: str, method: str, **params: Any) -> Any:
        return call_sync("127.0.0.1", self.ports[name], method, timeout=5, **params)


def spend_txs(config: DevnetConfig, sender: int, count: int, first_nonce: int = 0) -> list[bytes]:
    wallet = template("wallet").address
    key = config.network.test_key(f"user-{sender}")
    to = config.network.test_key(f"user-{(sender + 1) % 4}").wallet_address(wallet)
    return [
        Transaction(key.wallet_address(wallet), n, 100_000, 1, methods.spend(to, 1000 + n))
        .sign(key, config.network.genesis_id)
        .encode()
        for n in range(first_nonce, first_nonce + count)
    ]


def submit(c: Cluster, txs: list[bytes]) -> None:
    cfg = c.config
    relay = cfg.network.test_key("relay-0")
    nonce = c.call("smesher-0", "get_l1_account", address=l1_address(relay.public_key))["nonce"]
    bundle = Bundle(relay.public_key, nonce, bytes(24), tuple(txs)).sign(
        relay, cfg.network.genesis_id
    )
    c.call("smesher-0", "submit_bundle", bundle=bundle.encoded)
    c.wait(
        "the bundle to be applied",
        lambda: (
            c.call("smesher-0", "get_l1_account", address=l1_address(relay.public_key))["nonce"]
            > nonce
        ),
    )


def make_cluster(tmp_path: Path, faults: list[str]) -> Cluster:
    (tmp_path / "logs").mkdir()
    path = write_config(tmp_path)
    # A loaded test machine can delay the executor's first claims by many layers.
    extra = ["[shadow]", "claim_deadline_layers = 40"]
    if faults:
        extra += ["[executor.fault]", *faults]
    path.write_text(path.read_text().replace("[athena]", "\n".join([*extra, "[athena]"])))
    c = Cluster(path, tmp_path / "logs")
    for name in [*SMESHERS, "executor"]:
        c.start(name)
    return c


@pytest.fixture
def honest(tmp_path: Path) -> Iterator[tuple[Cluster, Shadows]]:
    c = make_cluster(tmp_path, [])
    shadows = Shadows(c)
    try:
        yield c, shadows
    finally:
        shadows.stop_all()
        c.stop_all()


def applied(c: Cluster) -> int:
    value = c.call("executor", "status")["applied_layer"]
    return -1 if value is None else int(value)


@pytest.mark.parametrize(
    "history", [pytest.param(12, id="12-layers"), pytest.param(200, marks=pytest.mark.slow)]
)
def test_late_shadows_verify_every_layer_and_agree(
    honest: tuple[Cluster, Shadows], history: int
) -> None:
    c, shadows = honest
    c.wait("the executor to apply layer 2", lambda: applied(c) >= 2, timeout=60)
    nonce = 0
    while applied(c) < history:
        for sender in range(3):
            submit(c, spend_txs(c.config, sender, 5, first_nonce=nonce))
        nonce += 5
    c.wait(f"layer {history}", lambda: applied(c) >= history, timeout=60 + history)

    shadows.start("shadow-a")
    target = applied(c)
    c.wait(
        "shadow-a to verify the history",
        lambda: (shadows.call("shadow-a", "status")["verified_up_to"] or -1) >= target - 2,
        timeout=90,
    )
    shadows.start("shadow-b")
    time.sleep(0.3)
    shadows.kill("shadow-b")  # during its catch-up
    shadows.start("shadow-b")
    target = applied(c)
    for name in ("shadow-a", "shadow-b"):
        c.wait(
            f"{name} to catch up",
            lambda n=name: (
                (  # type: ignore[misc]
                    shadows.call(n, "status")["verified_up_to"] or -1
                )
                >= target - 2
            ),
            timeout=90,
        )
    upto = min(shadows.call(n, "status")["verified_up_to"] for n in ("shadow-a", "shadow-b"))
    for layer in range(upto + 1):
        a = shadows.call("shadow-a", "get_verdict", layer=layer)
        b = shadows.call("shadow-b", "get_verdict", layer=layer)
        assert a["kind"] == b["kind"] == "verified", (layer, a, b)
        assert (
            a["our_root"] == b["our_root"] == c.call("executor", "get_layer", layer=layer)["root"]
        )
    for name in ("shadow-a", "shadow-b"):
        assert shadows.call(name, "status")["divergences"] == 0
        assert shadows.call(name, "list_divergences") == []


def test_cheating_executor_is_caught(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, ["wrong_root_at_layer = 4"])
    shadows = Shadows(c)
    try:
        shadows.start("shadow-0")
        strict_log = open(c.logs / "strict.log", "ab")
        strict = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shadow_executor",
                "--config",
                str(c.config_path),
                "--node",
                "shadow-strict",
                "--port",
                str(free_ports(1)[0]),
                "--strict",
            ],
            stdout=strict_log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        c.wait(
            "the shadow to report the tampered root of layer 4",
            lambda: shadows.call("shadow-0", "status")["divergences"] >= 1,
            timeout=60,
        )
        verdict = shadows.call("shadow-0", "get_divergence", layer=4)
        assert verdict["kind"] == "divergence" and verdict["tx_id"] is None
        assert "tampered" in verdict["reason"]
        assert verdict["claimed_root"] != verdict["our_root"]
        assert verdict["our_root"] == c.call("executor", "get_layer", layer=4)["root"]
        assert (shadows.call("shadow-0", "status")["verified_up_to"] or 0) >= 3
        assert strict.wait(30) == 2, "--strict exits non-zero at the first divergence"
        strict_log.close()
        assert "divergence at layer 4" in (c.logs / "strict.log").read_text()
    finally:
        shadows.stop_all()
        c.stop_all()


def test_skipped_transaction_is_named(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    path = write_config(tmp_path)
    txs = spend_txs(load_config(path), 0, 3)
    skipped = decode_transaction(txs[1]).id
    text = path.read_text().replace(
        "[athena]",
        "[shadow]\nclaim_deadline_layers = 40\n"
        f'[executor.fault]\nskip_tx = "{skipped.hex()}"\n[athena]',
    )
    path.write_text(text)
    c = Cluster(path, tmp_path / "logs")
    for name in [*SMESHERS, "executor"]:
        c.start(name)
    shadows = Shadows(c)
    try:
        shadows.start("shadow-0")
        c.wait("the executor to apply layer 1", lambda: applied(c) >= 1, timeout=60)
        submit(c, txs)
        c.wait(
            "a divergence",
            lambda: shadows.call("shadow-0", "status")["divergences"] >= 1,
            timeout=60,
        )
        first = shadows.call("shadow-0", "list_divergences")[0]
        assert first["kind"] == "divergence"
        assert first["tx_id"] == skipped
        assert "did not run" in first["reason"]
        assert first["differences"], "the differing records are named"
        receipt_layer = first["layer"]
        block = c.call("smesher-0", "get_block", layer=receipt_layer)
        assert txs[1] in block["block"]  # the layer that carried the skipped transaction
    finally:
        shadows.stop_all()
        c.stop_all()
