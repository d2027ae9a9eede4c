"""`devnet deploy | call | account | tx status`: programs, calls and state on a running
devnet, through the client library (transactions to the relay, reads from the executor)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from athena_vm.address import template_address
from athena_vm.errors import ProgramError
from athena_vm.program import load_program
from devnet.builtin_templates import builtin_templates
from devnet.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    DataDirOption,
    JsonOption,
    command,
    connect,
    emit_json,
    fail,
    fields,
    jsonable,
    receipt_lines,
    warn,
)
from devnet.cli.selectors import address_of, parse_wallet, signer
from devnet.cli.wallet import (
    DEFAULT_WITHIN,
    FromOption,
    GasLimitOption,
    GasPriceOption,
    WithinOption,
    finish,
    wait,
)
from devnet.client import ClientError, Devnet, Receipt
from devnet.client.account import DEFAULT_GAS_LIMIT, DEPLOY_GAS_LIMIT
from devnet.errors import RpcError
from devnet.methods import deploy, proxy

NOT_FOUND = 404


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        fail(f"{what} is not hex: {text!r}")


def _program(path: Path) -> bytes:
    """The ELF's bytes, checked here so a bad file is reported before anything is paid."""
    try:
        code = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        load_program(code)
    except ProgramError as exc:
        fail(f"{path} is not an Athena program: {exc}")
    return code


@command
def deploy_command(
    program: Annotated[Path, typer.Argument(metavar="FILE.elf", help="ELF program to deploy")],
    from_: FromOption = "0",
    gas_limit: GasLimitOption = DEPLOY_GAS_LIMIT,
    gas_price: GasPriceOption = 1,
    within: WithinOption = DEFAULT_WITHIN,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy a program as a new template; prints its address and the receipt."""
    code = _program(program)
    with connect(config, data_dir) as net:
        sender = signer(net, parse_wallet(from_, net.hrp))
        tx_id = sender.submit(deploy(code), gas_limit=gas_limit, gas_price=gas_price)
        receipt = wait(net, tx_id, within)
        address = template_of(net, code, receipt)
    deployed = net.bech32(address) if receipt.ok else None
    finish(net, receipt, as_json, {"template": deployed, "code_size": len(code)})


def template_of(net: Devnet, code: bytes, receipt: Receipt) -> bytes:
    """The deployed template's address: the receipt's output, which the address derived
    from the code must equal (anything else is a bug worth reporting)."""
    expected = template_address(code)
    if receipt.ok and receipt.output and receipt.output != expected:
        fail(f"deploy returned {receipt.output.hex()}, expected {expected.hex()}")
    return expected


@command
def call_command(
    address: Annotated[
        str, typer.Argument(metavar="ADDRESS", help="account to call (or a test wallet index)")
    ],
    method: Annotated[str, typer.Argument(metavar="METHOD", help="method name, e.g. buy")],
    args: Annotated[
        str, typer.Argument(metavar="ARGS_HEX", help="SCALE-encoded arguments, hex")
    ] = "",
    amount: Annotated[int, typer.Option(help="coins sent along", min=0)] = 0,
    from_: FromOption = "0",
    gas_limit: GasLimitOption = DEFAULT_GAS_LIMIT,
    gas_price: GasPriceOption = 1,
    within: WithinOption = DEFAULT_WITHIN,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Call ADDRESS.METHOD(ARGS) through the --from wallet; prints the receipt.

    The call goes through the wallet's `proxy`; the receipt's output is what the method
    returned.
    """
    raw_args = _hex(args, "ARGS_HEX")
    with connect(config, data_dir) as net:
        sender = signer(net, parse_wallet(from_, net.hrp))
        callee = address_of(net, parse_wallet(address, net.hrp))
        payload = proxy(callee, method, raw_args, amount)
        tx_id = sender.submit(payload, gas_limit=gas_limit, gas_price=gas_price)
        receipt = wait(net, tx_id, within)
    finish(net, receipt, as_json)


# --- reading ---------------------------------------------------------------------------------


def template_names() -> dict[bytes, str]:
    return {tpl.address: tpl.name for tpl in builtin_templates().values()}


def template_code(net: Devnet, address: bytes) -> bytes | None:
    """The code of the template at `address`, None if there is none (an address names an
    account or a template, never both)."""
    try:
        code: bytes = net.run(net.net.call, net.net.executor, "get_template", address=address)
    except RpcError as exc:
        if exc.code == NOT_FOUND:
            return None
        raise
    return code


def account_doc(net: Devnet, address: bytes, with_proof: bool) -> dict[str, Any]:
    """What `devnet account` prints: the account, its template's name, code if it is a
    template, and the proof."""
    names = template_names()
    info = net.account(address)
    doc = info.as_json(net.hrp)
    doc["template_name"] = names.get(info.template) if info.template else None
    code = None if info.exists else template_code(net, address)
    doc["is_template"] = code is not None
    doc["code_size"] = None if code is None else len(code)
    doc["builtin"] = names.get(address)
    if with_proof:
        doc["proof"] = net.proof(address).as_json()
    return doc


def _account_text(doc: dict[str, Any]) -> str:
    pairs: list[tuple[str, object]] = [("address", doc["address"])]
    if doc["is_template"]:
        kind = f"template, {doc['code_size']} bytes of code"
        pairs.append(("kind", kind + (f" (built-in {doc['builtin']})" if doc["builtin"] else "")))
    else:
        pairs += _account_pairs(doc)
    proof = doc.get("proof")
    if proof:
        verdict = "verifies" if proof["verified"] else "DOES NOT VERIFY"
        pairs += [
            ("proof", f"{verdict} against root {proof['root']} (layer {proof['layer']})"),
            ("proof bytes", proof["proof"]),
        ]
    return fields(pairs)


def _account_pairs(doc: dict[str, Any]) -> list[tuple[str, object]]:
    template = doc["template"]
    if template and doc["template_name"]:
        template = f"{template} ({doc['template_name']})"
    pairs: list[tuple[str, object]] = []
    if not doc["exists"]:
        pairs.append(("kind", "no account (never funded or spawned)"))
    return [
        *pairs,
        ("balance", doc["balance"]),
        ("nonce", doc["nonce"]),
        ("template", template),
        ("state", doc["state"]),
    ]


@command
def account_command(
    address: Annotated[
        str, typer.Argument(metavar="ADDRESS", help="address, test wallet index or key file")
    ],
    proof: Annotated[
        bool, typer.Option("--proof", help="add the Merkle proof and check it against the root")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """An account's balance, nonce, template and state (or a template's code size).

    As of the executor's latest applied layer; --proof adds the account's state proof and
    whether it verifies against the state root.
    """
    with connect(config, data_dir) as net:
        doc = account_doc(net, address_of(net, parse_wallet(address, net.hrp)), proof)
    if as_json:
        emit_json(doc)
        return
    typer.echo(_account_text(doc))
    if proof and not doc["proof"]["verified"]:
        fail("the state proof does not verify against its root")


# --- tx status -------------------------------------------------------------------------------


def tx_status_doc(net: Devnet, tx_id: bytes) -> dict[str, Any]:
    """The relay's view of a transaction and, once executed, the executor's receipt. A
    transaction the relay never saw (sent straight to a smesher) is found by its receipt."""
    view, relay_error = _relay_view(net, tx_id)
    receipt = net.receipt(tx_id)
    if view is None and receipt is None:
        why = relay_error or "the relay does not know it"
        fail(f"no transaction {tx_id.hex()}: {why} and the executor has no receipt")
    doc: dict[str, Any] = {
        "id": tx_id.hex(),
        "state": "executed" if view is None else view["state"],
        "layer": receipt.layer if view is None and receipt else None,
        "block_id": None,
        "reason": None,
        "attempts": None,
    }
    if view is not None:
        doc.update({k: jsonable(view.get(k)) for k in ("layer", "block_id", "reason", "attempts")})
    doc["known_to_relay"] = view is not None
    doc["receipt"] = None if receipt is None else receipt.as_json(net.hrp)
    return doc


def _relay_view(net: Devnet, tx_id: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The relay's status of the transaction, or why there is none: a relay that does not
    answer still leaves the executor's receipt to report."""
    try:
        return net.tx_status(tx_id), None
    except ClientError as exc:
        warn(f"the relay does not answer ({exc}); showing the executor's receipt only")
        return None, f"the relay does not answer ({exc})"


@command
def tx_status_command(
    tx_id: Annotated[str, typer.Argument(metavar="ID", help="transaction id, hex")],
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where a transaction is: pending, bundled, included, executed or dropped.

    Once executed, its receipt follows.
    """
    raw = _hex(tx_id, "ID")
    if len(raw) != 32:
        fail(f"a transaction id is 32 bytes (64 hex digits), got {len(raw)}")
    with connect(config, data_dir) as net:
        doc = tx_status_doc(net, raw)
    if as_json:
        emit_json(doc)
        return
    where = f" in layer {doc['layer']}" if doc["layer"] is not None else ""
    line = f"{doc['id']}: {doc['state']}{where}"
    if doc["reason"]:
        line += f" ({doc['reason']})"
    typer.echo(line)
    if doc["receipt"]:
        typer.echo(receipt_lines(doc["receipt"]))
