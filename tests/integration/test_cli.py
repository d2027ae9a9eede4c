"""The `devnet` command as a user runs it: a real subprocess, JSON outputs parsed."""

import json
import subprocess
import sys
from pathlib import Path

from athena_vm.payload import selector
from devnet.builtin_templates import template

ROOT = Path(__file__).resolve().parents[2]
GENESIS = "00" * 20


def devnet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devnet", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )


def test_build_and_vm_run_json(tmp_path: Path) -> None:
    source = tmp_path / "echo.c"
    source.write_text(
        '#include "athena.h"\n'
        'ATHENA_EXPORT(echo) { uint8_t b[4]; athena_read(b, 4); athena_log("echo");'
        " athena_return(b, 4); }\n"
    )
    elf = tmp_path / "echo.elf"
    built = devnet("build", str(source), "-o", str(elf))
    assert built.returncode == 0, built.stderr
    ran = devnet("vm", "run", str(elf), "--selector", "echo", "--input", "deadbeef", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result == {
        "status": "SUCCESS",
        "status_code": 0,
        "gas_used": result["gas_used"],
        "gas_left": 2**32 - 1 - result["gas_used"],
        "reason": None,
        "output": "deadbeef",
        "logs": ["echo"],
    }
    starved = json.loads(
        devnet(
            "vm",
            "run",
            str(elf),
            "--selector",
            "echo",
            "--gas",
            "8",
            "--input",
            "deadbeef",
            "--json",
        ).stdout
    )
    assert starved["status"] == "OUT_OF_GAS" and starved["status_code"] == 3
    assert starved["gas_left"] == 0 and starved["output"] == ""
    unknown = json.loads(devnet("vm", "run", str(elf), "--selector", "nope", "--json").stdout)
    assert unknown["status"] == "FAILURE" and "unknown selector" in unknown["reason"]
    traced = devnet("vm", "run", str(elf), "--selector", "echo", "--input", "00000000", "--trace")
    assert "ecall" in traced.stdout and "x2(sp)" in traced.stdout


def test_vm_run_rejects_a_malformed_program(tmp_path: Path) -> None:
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"\x7fELF" + bytes(10))
    ran = devnet("vm", "run", str(junk), "--json")
    assert ran.returncode == 2 and "truncated ELF header" in ran.stderr


def test_templates_list_json() -> None:
    listed = json.loads(devnet("templates", "list", "--json").stdout)
    names = [row["name"] for row in listed]
    assert names == ["wallet", "multisig", "token_mint", "token_wallet"]
    wallet = listed[0]
    assert wallet["address"].startswith("atest1")
    assert wallet["selectors"]["spend"] == "fb178430"
    assert wallet["code_size"] == len(template("wallet").code)


def test_tx_build_and_decode(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    assert devnet("key", "new", "--out", str(key), "--test-index", "3").returncode == 0
    shown = json.loads(devnet("key", "show", str(key), "--json").stdout)
    env = {"DEVNET_GENESIS_ID": GENESIS, "PATH": "/usr/bin:/bin"}
    built = devnet(
        "tx",
        "spend",
        "--key",
        str(key),
        "--to",
        shown["wallet"],
        "--amount",
        "7",
        "--nonce",
        "2",
        "--json",
        env=env,
    )
    assert built.returncode == 0, built.stderr
    signed = json.loads(built.stdout)
    decoded = json.loads(devnet("tx", "decode", signed["tx"], "--json").stdout)
    assert decoded["id"] == signed["id"]
    assert decoded["principal"] == shown["wallet"]
    assert decoded["nonce"] == 2 and decoded["method"] == "spend"
    assert decoded["selector"] == selector("spend").hex()
    spawn = json.loads(devnet("tx", "spawn", "--key", str(key), "--json", env=env).stdout)
    decoded = json.loads(devnet("tx", "decode", spawn["tx"], "--json").stdout)
    assert decoded["template_name"] == "wallet" and decoded["method"] == "spawn"
    garbage = devnet("tx", "decode", "0102")
    assert garbage.returncode == 2 and "not a transaction" in garbage.stderr
