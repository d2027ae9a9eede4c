"""The built-in templates: C sources in `templates/` with their committed ELF builds.

The ELFs are committed so every node runs the very same code; a test rebuilds each one
from its source and checks the bytes are identical (`devnet build` is reproducible).
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from athena_vm.address import template_address
from athena_vm.program import load_program

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
NAMES = ("wallet", "multisig", "token_mint", "token_wallet")


@dataclass(frozen=True)
class Template:
    name: str
    code: bytes
    address: bytes
    #: export name (without `athexp_`) → selector
    methods: dict[str, bytes]

    @property
    def source(self) -> Path:
        return TEMPLATES_DIR / f"{self.name}.c"


def _load(name: str) -> Template:
    code = (TEMPLATES_DIR / f"{name}.elf").read_bytes()
    program = load_program(code)
    methods = {
        full.removeprefix("athexp_"): sel
        for sel, full in sorted(program.export_names.items(), key=lambda item: item[1])
    }
    return Template(name, code, template_address(code), methods)


@cache
def builtin_templates() -> dict[str, Template]:
    return {name: _load(name) for name in NAMES}


def template(name: str) -> Template:
    return builtin_templates()[name]


def method_name(template_addr: bytes, chosen: bytes) -> str | None:
    """The method a selector names in a built-in template, if it is one."""
    for tpl in builtin_templates().values():
        if tpl.address == template_addr or not template_addr:
            for name, sel in tpl.methods.items():
                if sel == chosen:
                    return name
    return None
