"""`devnet templates list`: the built-in templates."""

import json
from typing import Annotated

import typer

from devnet.address import encode_address
from devnet.builtin_templates import builtin_templates

app = typer.Typer(help="Built-in Athena templates.", no_args_is_help=True)


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Name, template address, code size and selectors of every built-in template."""
    rows = [
        {
            "name": tpl.name,
            "address": encode_address(tpl.address),
            "code_size": len(tpl.code),
            "selectors": {name: sel.hex() for name, sel in tpl.methods.items()},
        }
        for tpl in builtin_templates().values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['name']:<13} {row['address']}  {row['code_size']:>6} bytes")
        selectors = row["selectors"]
        assert isinstance(selectors, dict)
        for name, sel in selectors.items():
            typer.echo(f"    {sel}  {name}")
