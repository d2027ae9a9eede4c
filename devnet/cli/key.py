"""`devnet key`: create and show ed25519 key files."""

import json
from pathlib import Path
from typing import Annotated

import typer

from devnet.address import encode_address
from devnet.builtin_templates import template
from devnet.errors import DevnetError
from devnet.keys import KeyPair, derive_test_key, load_key_file, save_key_file

app = typer.Typer(help="Key files.", no_args_is_help=True)


@app.command("new")
def new_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="key file to write")],
    test_index: Annotated[
        int | None, typer.Option(help="derive the devnet's deterministic test key N")
    ] = None,
    phrase: Annotated[str, typer.Option(help="seed phrase of test keys")] = "athena-devnet",
) -> None:
    """Write a key file for a new random key (or a deterministic test key)."""
    key = derive_test_key(phrase, test_index) if test_index is not None else KeyPair.generate()
    address = key.wallet_address(template("wallet").address)
    save_key_file(out, key, address)
    typer.echo(f"{out}: wallet {encode_address(address)}")


@app.command("show")
def show_command(
    file: Annotated[Path, typer.Argument(help="key file")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The public key and wallet address of a key file (never the private key)."""
    try:
        key_file = load_key_file(file)
    except DevnetError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    wallet = key_file.key.wallet_address(template("wallet").address)
    doc = {"public_key": key_file.key.public_key.hex(), "wallet": encode_address(wallet)}
    typer.echo(json.dumps(doc) if as_json else "\n".join(f"{k}: {v}" for k, v in doc.items()))
