"""The devnet's user commands against one running devnet, as a user runs them.

One devnet (`devnet up --detach`, the default config on free ports) serves
the whole module; every command runs as a subprocess and every `--json` output is parsed.
The tests run in file order: the node-control ones change the devnet and the last one
stops it.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The default config's ports, in the order they are replaced by free ones.
DEFAULT_PORTS = (7000, 7100, 7101, 7102, 7103, 7200, 7300, 7400)
SHADOW_PORT = 7400

pytestmark = pytest.mark.integration


def free_ports(count: int) -> list[int]:
    """`count` free ports; the shadow's (last) also has a free successor, which
    `devnet attach-shadow` takes for shadow-1."""
    while True:
        sockets = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        ports = [s.getsockname()[1] for s in sockets]
        try:
            probe = socket.socket()
            probe.bind(("127.0.0.1", ports[-1] + 1))
            probe.close()
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        if ports[-1] + 1 not in ports:
            return ports


def write_config(directory: Path) -> Path:
    """configs/devnet.toml with free ports, 4 test wallets and its own data dir.

    Layers stay at the default 1 s: with 500 ms layers on a loaded machine the L1 was seen
    to stop certifying while it caught up with the clock after a slow start."""
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    text = (ROOT / "configs" / "devnet.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^port = (\d+)", lambda m: f"port = {ports[int(m.group(1))]}", text)
    text = re.sub(r'(?m)^data_dir = "data"', f'data_dir = "{directory / "data"}"', text)
    text = re.sub(r"(?m)^test_wallets = \d+", "test_wallets = 4", text)
    path = directory / "devnet.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self.stderr
        return json.loads(self.stdout)


@dataclass
class Net:
    config: Path
    data_dir: Path

    def run(self, *args: str, timeout: float = 60, config: bool = True) -> Run:
        """`devnet ARGS --config CONFIG` (without --config for commands that take none)."""
        tail = ["--config", str(self.config)] if config else []
        done = subprocess.run(
            [sys.executable, "-m", "devnet", *args, *tail],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return Run(done.returncode, done.stdout, done.stderr)

    def json(self, *args: str) -> Any:
        return self.run(*args, "--json").json()

    def pids(self) -> list[int]:
        """The supervisor's and every node's pid, from devnet.json."""
        state = json.loads((self.data_dir / "devnet.json").read_text(encoding="utf-8"))
        return [int(state["supervisor_pid"]), *(n["pid"] for n in state["nodes"] if n["pid"])]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    directory = tmp_path_factory.mktemp("cli-devnet")
    devnet = Net(write_config(directory), directory / "data")
    started = devnet.run("up", "--detach", timeout=120)
    assert started.code == 0, started.stderr + started.stdout
    pids = devnet.pids()
    try:
        yield devnet
    finally:
        if (devnet.data_dir / "devnet.json").exists():
            pids += devnet.pids()
            devnet.run("down")
        for pid in pids:  # whatever a failed test left behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def wait_for(what: str, check: Any, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


# --- looking -------------------------------------------------------------------------------


def test_status_shows_every_node_running(net: Net) -> None:
    doc = net.json("status")
    names = [row["node"] for row in doc["nodes"]]
    assert names == [*(f"smesher-{i}" for i in range(4)), "executor", "relay-0", "shadow-0"]
    for row in doc["nodes"]:
        assert row["state"] == "running" and isinstance(row["pid"], int), row
        assert row["health"] in ("ok", "lagging") and row["layer"] is not None, row
    assert doc["supervisor_answered"] is True and len(doc["genesis_id"]) == 40
    table = net.run("status").stdout.splitlines()
    assert table[0].split()[:4] == ["node", "role", "pid", "state"] and len(table) == 8


# --- wallets and transactions --------------------------------------------------------------


def test_spend_moves_the_balance_and_its_status_is_executed(net: Net) -> None:
    wallets = net.json("wallet", "list")
    assert [w["index"] for w in wallets] == [0, 1, 2, 3]
    before = wallets[1]["balance"]
    spent = net.json("wallet", "spend", "--from", "0", "--to", wallets[1]["address"], "12345")
    assert spent["receipt"]["status"] == "SUCCESS"
    assert spent["receipt"]["principal"] == wallets[0]["address"]
    after = net.json("wallet", "balance", "user-1")
    assert after["balance"] == before + 12345 and after["address"] == wallets[1]["address"]

    def executed() -> Any:
        doc = net.json("tx", "status", spent["tx_id"])
        return doc if doc["state"] == "executed" else None

    status = wait_for("the relay to see the spend executed", executed)
    assert status["receipt"]["tx_id"] == spent["tx_id"] and status["known_to_relay"]
    assert spent["tx_id"] in net.run("tx", "status", spent["tx_id"]).stdout


def test_spend_without_waiting_and_a_rejected_spend(net: Net) -> None:
    queued = net.json("wallet", "spend", "--from", "2", "--to", "3", "1", "--no-wait")
    state = net.json("tx", "status", queued["tx_id"])["state"]
    assert state in ("pending", "bundled", "included", "executed")
    refused = net.run("wallet", "spend", "--from", "2", "--to", "3", str(2**62), "--json")
    assert refused.code == 1 and "over_balance" in refused.stderr and refused.stdout == ""


def test_spawn_a_new_wallet_and_read_its_account_with_proof(net: Net, tmp_path: Path) -> None:
    key = tmp_path / "me.json"
    spawned = net.json("wallet", "spawn", "--new", str(key), "--amount", "1000000000")
    assert key.exists() and spawned["nonce"] == 1 and 0 < spawned["balance"] < 10**9
    account = net.json("account", str(key), "--proof")
    assert account["address"] == spawned["address"] and account["exists"]
    assert account["template_name"] == "wallet" and account["state"] == spawned["public_key"]
    assert account["proof"]["verified"] is True and account["proof"]["value"]
    back = net.json("wallet", "spend", "--from", str(key), "--to", "0", "1000")
    assert back["receipt"]["status"] == "SUCCESS"
    assert net.json("wallet", "balance", spawned["address"])["nonce"] == 2


def test_deploy_gives_a_template_that_account_shows(net: Net, tmp_path: Path) -> None:
    source = tmp_path / "echo.c"
    source.write_text(
        '#include "athena.h"\n'
        "ATHENA_EXPORT(echo) { uint8_t b[4]; athena_read(b, 4); athena_return(b, 4); }\n"
    )
    elf = tmp_path / "echo.elf"
    built = net.run("build", str(source), "-o", str(elf), config=False)
    assert built.code == 0, built.stderr
    deployed = net.json("deploy", str(elf), "--from", "3")
    assert deployed["receipt"]["status"] == "SUCCESS"
    assert deployed["code_size"] == elf.stat().st_size
    shown = net.json("account", deployed["template"])
    assert shown["is_template"] and shown["code_size"] == elf.stat().st_size
    assert not shown["exists"] and shown["builtin"] is None
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"\x7fELF" + bytes(8))
    refused = net.run("deploy", str(junk))
    assert refused.code == 2 and "not an Athena program" in refused.stderr


def test_call_returns_the_output_and_a_failed_call_exits_1(net: Net) -> None:
    amount = 123456
    # wallet.max_spend(Option<spend payload>): the amount a spend of it would move
    args = "01" + "fb178430" + "80" + "00" * 24 + amount.to_bytes(8, "little").hex()
    called = net.json("call", "1", "max_spend", args, "--from", "2")
    assert called["receipt"]["status"] == "SUCCESS"
    assert called["receipt"]["output"] == amount.to_bytes(8, "little").hex()
    # wallet.spend only obeys its own wallet: called by another it fails, with a receipt
    failed = net.run("call", "1", "spend", "--from", "2", "--json")
    assert failed.code == 1 and "FAILURE" in failed.stderr
    assert json.loads(failed.stdout)["receipt"]["status"] == "FAILURE"


# --- node control --------------------------------------------------------------------------


def test_kill_start_restart_pause_resume_partition(net: Net) -> None:
    killed = net.json("kill", "smesher-3")
    assert killed["state"] == "stopped" and killed["pid"] is None
    assert net.json("pause", "relay-0")["state"] == "paused"
    rows = {r["node"]: r for r in net.json("status")["nodes"]}
    assert rows["smesher-3"]["health"] == "stopped" and rows["smesher-3"]["pid"] is None
    assert rows["relay-0"]["health"] == "paused" and rows["smesher-0"]["health"] == "ok"
    assert net.json("resume", "relay-0")["state"] == "running"

    started = net.json("start", "smesher-3")
    assert started["state"] == "running" and isinstance(started["pid"], int)
    restarted = net.json("restart", "smesher-3", "--set", "network.key_phrase=athena-devnet")
    assert restarted["pid"] != started["pid"] and restarted["restarts"] == 1
    assert restarted["overrides"] == ["network.key_phrase=athena-devnet"]
    bad = net.run("restart", "smesher-3", "--set", "network.layer_duration_ms=5")
    assert bad.code == 2 and "layer_duration_ms" in bad.stderr

    assert net.json("partition", "smesher-2")["isolated"] is True
    assert "connected to its peers again" in net.run("heal", "smesher-2").stdout
    refused = net.run("partition", "executor")
    assert refused.code == 2 and "only a smesher" in refused.stderr


def test_logs_render_tail_and_follow(net: Net) -> None:
    shown = net.run("logs", "smesher-0", "-n", "5")
    lines = shown.stdout.splitlines()
    assert shown.code == 0 and len(lines) == 5
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} \w+ ", lines[0]), lines[0]
    raw = net.run("logs", "smesher-0", "-n", "3", "--raw").stdout.splitlines()
    assert len(raw) == 3 and all(json.loads(line)["node"] == "smesher-0" for line in raw)
    entries = net.json("logs", "executor", "-n", "4")
    assert len(entries) == 4 and all("event" in e for e in entries)

    follower = subprocess.Popen(
        [sys.executable, "-m", "devnet", "logs", "executor", "-f", "--config", str(net.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert follower.stdout is not None
    guard = threading.Timer(30, follower.kill)  # a stalled devnet must not hang the test
    guard.start()
    seen = [follower.stdout.readline() for _ in range(13)]  # the backlog, then new layers
    guard.cancel()
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=10)
    assert follower.returncode == 0 and err == ""
    assert all("layer applied" in line for line in seen), seen


def test_attach_shadow_is_supervised(net: Net) -> None:
    shadow = net.json("attach-shadow")
    assert shadow["name"] == "shadow-1" and shadow["state"] == "running"
    assert shadow["pid"] in net.pids()  # in devnet.json, so `devnet down` stops it


def test_errors_are_one_line_on_stderr_with_exit_2(net: Net) -> None:
    for args, message in (
        (("kill", "nope"), "no node named 'nope' (nodes: smesher-0"),
        (("wallet", "balance", "9"), "no test wallet 9: this devnet has 4"),
        (("tx", "status", "00" * 32), "the relay does not know it"),
    ):
        failed = net.run(*args, "--json")
        assert failed.code == 2 and failed.stdout == "", (args, failed)
        assert failed.stderr.startswith("error: ") and message in failed.stderr, failed


# --- stopping ------------------------------------------------------------------------------


def test_down_stops_every_process_and_reset_deletes_the_data_dir(net: Net) -> None:
    pids = net.pids()
    assert len(pids) >= 8  # the supervisor and every node (shadow-1 too, if attached)
    stopped = net.json("down")
    assert stopped["supervisor_was_running"] and stopped["leftovers_stopped"] == []
    assert [pid for pid in pids if alive(pid)] == []
    assert not (net.data_dir / "devnet.json").exists()
    gone = net.run("status")
    assert gone.code == 2 and "no devnet is running" in gone.stderr
    refused = net.run("reset")  # stdin is not a terminal: --yes is required
    assert refused.code == 2 and "--yes" in refused.stderr and net.data_dir.exists()
    reset = net.json("reset", "--yes")
    assert reset == {"data_dir": str(net.data_dir), "stopped": False, "deleted": True}
    assert not net.data_dir.exists()
