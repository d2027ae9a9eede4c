"""The pure parts of the devnet's user commands: log rendering and tailing, wallet
selectors, status health, the reset guard, error reporting."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer

from devnet.address import encode_address
from devnet.builtin_templates import template
from devnet.cli.account import _account_text
from devnet.cli.common import CliError, command, jsonable, table
from devnet.cli.logs import (
    follow,
    format_value,
    log_path,
    parse_entry,
    render_line,
    short_time,
    tail_lines,
)
from devnet.cli.selectors import SelectorError, WalletRef, indexed_wallet, parse_wallet, signer
from devnet.cli.status import health, progress, row
from devnet.cli.up import check_deletable, looks_like_data_dir
from devnet.client import TransactionRejected
from devnet.keys import derive_test_key

HRP = "atest"
ADDRESS = encode_address(derive_test_key("x", 1).wallet_address(template("wallet").address))

# --- log lines -------------------------------------------------------------------------------


def entry(**fields: Any) -> str:
    base = {"node": "smesher-0", "event": "layer certified", "level": "info"}
    return json.dumps({**base, "timestamp": "2026-01-02T03:04:05.678901Z", **fields})


def test_render_line_shows_time_level_event_and_the_other_fields() -> None:
    line = entry(layer=7, block="ab12", note="two words", ok=True, gone=None)
    assert render_line(line) == (
        '03:04:05.678 info    layer certified  layer=7 block=ab12 note="two words" ok=true '
        "gone=null"
    )


def test_render_line_indents_an_exception_under_its_entry() -> None:
    rendered = render_line(entry(level="error", exception="Traceback:\n  boom\nValueError: x"))
    assert rendered.splitlines() == [
        "03:04:05.678 error   layer certified",
        "    Traceback:",
        "      boom",
        "    ValueError: x",
    ]


@pytest.mark.parametrize(
    "line",
    ["Traceback (most recent call last):", '{"no": "event"}', "{not json", "[1, 2]", ""],
)
def test_a_line_that_is_not_a_log_entry_is_shown_as_it_is(line: str) -> None:
    assert parse_entry(line) is None
    assert render_line(line + "\n") == line


def test_values_and_times_render_compactly() -> None:
    assert format_value("plain") == "plain"
    assert format_value("") == '""'
    assert format_value("a=b") == '"a=b"'
    assert format_value({"k": [1, 2]}) == '{"k":[1,2]}'
    assert format_value(3.5) == "3.5"
    assert short_time("2026-01-02T03:04:05Z") == "03:04:05"
    assert short_time(None) == "-"
    assert short_time("yesterday") == "yesterday"


# --- tailing and following -------------------------------------------------------------------


def write_lines(path: Path, count: int, width: int = 10) -> list[str]:
    lines = [f"{i:0{width}d}" for i in range(count)]
    path.write_text("".join(f"{line}\n" for line in lines))
    return lines


@pytest.mark.parametrize("count", [None, 0, 1, 5, 999, 5000])
def test_tail_lines_returns_the_last_lines_and_the_end_offset(tmp_path: Path, count: Any) -> None:
    path = tmp_path / "n.log"
    lines = write_lines(path, 2000, width=30)  # 62 KB: several blocks back from the end
    got, offset = tail_lines(path, count)
    expected = lines if count is None else lines[-count:] if count else []
    assert got == expected and offset == path.stat().st_size


def test_tail_lines_leaves_an_unterminated_line_to_the_follower(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    path.write_text("one\ntwo\nhalf")
    assert tail_lines(path, 5) == (["one", "two"], len("one\ntwo\n"))
    assert tail_lines(path, None) == (["one", "two"], len("one\ntwo\n"))


def test_follow_prints_appended_lines_and_starts_over_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    path.write_text("old\npar")
    seen: list[str] = []
    steps: list[Callable[[], object]] = [
        lambda: path.write_text("old\npartial done\nnew\n"),
        lambda: path.write_text("fresh\n"),  # truncated: a reset devnet
        path.unlink,
        lambda: path.write_text("again\n"),
    ]

    def sleep(_: float) -> None:
        if steps:
            steps.pop(0)()

    follow(path, len("old\n"), seen.append, sleep=sleep, rounds=12)
    assert seen == ["partial done", "new", "fresh", "again"]


def test_log_path_prefers_devnet_json_and_names_the_logs_there_are(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "smesher-0.log").write_text("x\n")
    assert log_path(tmp_path, "smesher-0") == tmp_path / "logs" / "smesher-0.log"
    elsewhere = tmp_path / "elsewhere.log"
    nodes = [{"name": "relay-0", "log": str(elsewhere)}]
    (tmp_path / "devnet.json").write_text(json.dumps({"nodes": nodes}))
    assert log_path(tmp_path, "relay-0") == elsewhere
    with pytest.raises(CliError, match=r"no log for 'nope' .*\(logs: smesher-0\)"):
        log_path(tmp_path, "nope")


# --- wallet selectors ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "index"), [("0", 0), ("7", 7), ("user-3", 3), (" 2 ", 2)])
def test_a_number_or_user_n_is_a_test_wallet(text: str, index: int) -> None:
    assert parse_wallet(text, HRP) == WalletRef(text.strip(), index=index)


def test_an_address_is_recognised_by_the_network_prefix() -> None:
    ref = parse_wallet(ADDRESS, HRP)
    assert ref.address is not None and encode_address(ref.address) == ADDRESS
    assert parse_wallet(ADDRESS.upper(), HRP).address == ref.address
    with pytest.raises(SelectorError, match="checksum"):
        parse_wallet(ADDRESS[:-1] + ("q" if ADDRESS[-1] != "q" else "p"), HRP)
    with pytest.raises(SelectorError, match="too short"):
        parse_wallet("atest1qq", HRP)


@pytest.mark.parametrize("text", ["me.json", "keys/user-0.json", "user-x", "-1", "stest1abc"])
def test_anything_else_is_a_key_file(text: str) -> None:
    assert parse_wallet(text, HRP) == WalletRef(text, key_file=Path(text))


def test_an_empty_selector_says_what_is_accepted() -> None:
    with pytest.raises(SelectorError, match="test wallet index, a key file or an address"):
        parse_wallet("  ", HRP)


class StubNet:
    """What the selectors use of a `Devnet`."""

    def __init__(self) -> None:
        self.hrp = HRP
        self.wallets = ["w0", "w1"]


def test_an_address_cannot_sign_and_an_index_must_exist() -> None:
    net: Any = StubNet()
    with pytest.raises(SelectorError, match="is an address: to sign"):
        signer(net, parse_wallet(ADDRESS, HRP))
    with pytest.raises(SelectorError, match=r"no test wallet 2: this devnet has 2 \(0\.\.1"):
        indexed_wallet(net, 2)
    with pytest.raises(SelectorError, match="no such key file"):
        signer(net, parse_wallet("/nonexistent/key.json", HRP))
    assert indexed_wallet(net, 1) is net.wallets[1]


# --- status ----------------------------------------------------------------------------------


def test_health_is_the_state_unless_running_then_what_the_node_says() -> None:
    smesher = {"layer": 10, "last_certified": 9}
    assert health("stopped", "smesher", None, None) == "stopped"
    assert health("crashed", "smesher", smesher, None) == "crashed"
    assert health("paused", "relay", None, None) == "paused"
    assert health("running", "smesher", None, "timed out") == "down: timed out"
    assert health("running", "smesher", smesher, None) == "ok"
    assert health("running", "smesher", {"layer": 10, "last_certified": 5}, None) == "lagging"
    assert health("running", "smesher", {**smesher, "isolated": True}, None) == "isolated"
    shadow = {"applied_layer": 9, "l1_layer": 9, "divergences": 2}
    assert health("running", "shadow", shadow, None) == "divergences 2"
    assert progress("executor", {"applied_layer": 3, "l1_layer": 5}) == (5, 3, 2)
    assert progress("relay", {"block_layer": None, "layer": 5}) == (5, None, None)


def test_a_row_joins_the_supervisor_view_and_the_node_status() -> None:
    view = {"name": "executor", "role": "executor", "pid": 12, "state": "running", "restarts": 1}
    got = row(view, {"applied_layer": 7, "l1_layer": 7}, None)
    assert got["node"] == "executor" and got["pid"] == 12 and got["restarts"] == 1
    assert (got["layer"], got["applied"], got["lag"], got["health"]) == (7, 7, 0, "ok")
    stopped = row({**view, "state": "stopped", "pid": None}, None, None)
    assert stopped["health"] == "stopped" and stopped["layer"] is None


def test_table_right_aligns_numbers_and_dashes_missing_values() -> None:
    text = table(["node", "pid"], [["smesher-0", 12], ["executor", None]], frozenset({"pid"}))
    assert text.splitlines() == ["node       pid", "smesher-0   12", "executor     -"]


# --- reset guard -----------------------------------------------------------------------------


def test_a_data_dir_is_recognised_by_what_devnet_up_writes(tmp_path: Path) -> None:
    assert not looks_like_data_dir(tmp_path)
    (tmp_path / "devnet.toml").write_text('[network]\ndata_dir = "/somewhere/else"\n')
    assert not looks_like_data_dir(tmp_path)  # a user's config next to its data dir
    (tmp_path / "devnet.toml").write_text(f'[network]\ndata_dir = "{tmp_path}"\n')
    (tmp_path / "node").mkdir()
    assert not looks_like_data_dir(tmp_path / "node")
    for marker in ("devnet.json", "logs/executor.log", "smesher-0/chain/CURRENT"):
        other = tmp_path / marker.replace("/", "_")
        (other / marker).parent.mkdir(parents=True)
        (other / marker).write_text("")
        assert looks_like_data_dir(other), marker


def test_reset_refuses_what_is_not_a_devnet_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "project" / "data"
    (data / "logs").mkdir(parents=True)
    (data / "logs" / "executor.log").write_text("")
    check_deletable(data)  # fine
    monkeypatch.chdir(data / "logs")
    with pytest.raises(CliError, match="a parent of"):
        check_deletable(data)
    monkeypatch.chdir(tmp_path)
    (data / ".git").mkdir()
    with pytest.raises(CliError, match=r"holds \.git"):
        check_deletable(data)
    with pytest.raises(CliError, match="not a devnet data directory"):
        check_deletable(tmp_path / "project")
    with pytest.raises(CliError, match="your home"):
        check_deletable(Path.home())


# --- reporting -------------------------------------------------------------------------------


def test_errors_become_exit_codes_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    @command
    def rejected() -> None:
        raise TransactionRejected(bytes(32), "over_balance: too poor")

    @command
    def bug() -> None:
        raise ValueError("oops")

    @command
    def refused() -> None:
        raise CliError("no such thing")

    for fn, code, message in (
        (rejected, 1, "rejected by the relay: over_balance: too poor"),
        (bug, 2, "unexpected ValueError: oops"),
        (refused, 2, "error: no such thing"),
    ):
        with pytest.raises(typer.Exit) as exit_:
            fn()
        assert exit_.value.exit_code == code
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_jsonable_turns_bytes_into_hex_everywhere() -> None:
    assert jsonable({"id": b"\x01\x02", "xs": [b"\xff", 1, None], 3: (b"",)}) == {
        "id": "0102",
        "xs": ["ff", 1, None],
        "3": [""],
    }


def test_a_template_is_shown_by_its_code() -> None:
    doc = {
        "address": ADDRESS,
        "is_template": True,
        "code_size": 2428,
        "builtin": None,
        "proof": None,
    }
    assert _account_text(doc).splitlines() == [
        f"address  {ADDRESS}",
        "kind     template, 2428 bytes of code",
    ]
