"""`devnet build FILE.c -o FILE.elf`: compile a C guest program with the Athena SDK."""

from pathlib import Path
from typing import Annotated

import typer

from athena_vm.build import BuildError, build


def build_command(
    source: Annotated[Path, typer.Argument(help="C source file of the guest program")],
    output: Annotated[Path, typer.Option("-o", "--output", help="ELF file to write")],
) -> None:
    """Compile a C program to an Athena RV32EM ELF (reproducible: same source, same bytes)."""
    try:
        elf = build(source, output)
    except BuildError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{output}: {len(elf)} bytes")
