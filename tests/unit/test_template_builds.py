"""Every committed template ELF is exactly what its C source builds to.

Nodes run the committed `templates/NAME.elf`; this checks that it is reproducible from
`templates/NAME.c`, so the code everyone runs is the code everyone can read.
"""

from pathlib import Path

import pytest

from athena_vm.address import template_address
from athena_vm.build import build
from devnet.builtin_templates import NAMES, TEMPLATES_DIR, template


def test_every_source_has_a_committed_build() -> None:
    sources = {path.stem for path in TEMPLATES_DIR.glob("*.c")}
    elfs = {path.stem for path in TEMPLATES_DIR.glob("*.elf")}
    assert sources == elfs == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_elf_is_rebuilt_identically(name: str, tmp_path: Path) -> None:
    committed = (TEMPLATES_DIR / f"{name}.elf").read_bytes()
    output = tmp_path / f"{name}.elf"
    rebuilt = build(TEMPLATES_DIR / f"{name}.c", output)
    assert output.read_bytes() == rebuilt
    assert rebuilt == committed, (
        f"templates/{name}.elf is stale: rebuild it with "
        f"`devnet build templates/{name}.c -o templates/{name}.elf`"
    )
    assert template_address(rebuilt) == template(name).address
