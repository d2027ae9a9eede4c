"""The program loader: exports and selectors, hostile ELF files, reproducible builds.

Malformed ELFs are made by patching one field of a real compiled guest with `struct`, so each
case breaks exactly one rule and must be refused with a `ProgramError` naming it.
"""

import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from athena_vm import ProgramError, StatusCode, load_program
from athena_vm.build import build
from athena_vm.program import MAX_CODE_BYTES
from tests.conftest import GUESTS
from tests.vmrun import run_code

Guest = Callable[[str], bytes]

#: Selectors of the wallet's methods as DESIGN.md §3 lists them.
WALLET_SELECTORS = {
    "spawn": "03f53f20",
    "spend": "fb178430",
    "proxy": "d422606a",
    "deploy": "e24cc333",
    "max_spend": "06ad3760",
    "verify": "9d24bdc2",
    "receive": "d0145464",
}

# ELF32 field offsets.
E_IDENT_CLASS, E_IDENT_DATA = 4, 5
E_TYPE, E_MACHINE, E_ENTRY, E_PHOFF, E_SHOFF = 16, 18, 24, 28, 32
E_PHENTSIZE, E_PHNUM, E_SHENTSIZE, E_SHNUM, E_SHSTRNDX = 42, 44, 46, 48, 50
P_TYPE, P_OFFSET, P_VADDR, P_FILESZ, P_MEMSZ, P_FLAGS = 0, 4, 8, 16, 20, 24
SH_NAME, SH_OFFSET, SH_SIZE = 0, 16, 20
PF_X = 1


@dataclass(frozen=True)
class Elf:
    """Where things are in one ELF file, for patching it."""

    blob: bytes

    def u16(self, offset: int) -> int:
        return int(struct.unpack_from("<H", self.blob, offset)[0])

    def u32(self, offset: int) -> int:
        return int(struct.unpack_from("<I", self.blob, offset)[0])

    @property
    def entry(self) -> int:
        return self.u32(E_ENTRY)

    def phdr(self, index: int) -> int:
        return self.u32(E_PHOFF) + 32 * index

    def segment(self, executable: bool) -> int:
        """File offset of the first PT_LOAD header with (or without) PF_X."""
        for index in range(self.u16(E_PHNUM)):
            at = self.phdr(index)
            if self.u32(at + P_TYPE) == 1 and bool(self.u32(at + P_FLAGS) & PF_X) == executable:
                return at
        raise AssertionError("no such segment")

    def shdr(self, name: bytes) -> int:
        """File offset of the section header called `name`."""
        shoff = self.u32(E_SHOFF)
        names = shoff + 40 * self.u16(E_SHSTRNDX)
        table = self.u32(names + SH_OFFSET)
        for index in range(self.u16(E_SHNUM)):
            at = shoff + 40 * index
            start = table + self.u32(at + SH_NAME)
            if self.blob[start : self.blob.index(b"\0", start)] == name:
                return at
        raise AssertionError(f"no section {name!r}")

    @property
    def exports(self) -> int:
        """File offset of the export table's first record."""
        return self.u32(self.shdr(b".note.athena_export") + SH_OFFSET)

    def vaddr_to_offset(self, vaddr: int) -> int:
        for index in range(self.u16(E_PHNUM)):
            at = self.phdr(index)
            base = self.u32(at + P_VADDR)
            if base <= vaddr < base + self.u32(at + P_FILESZ):
                return self.u32(at + P_OFFSET) + vaddr - base
        raise AssertionError(f"0x{vaddr:08x} is not in the file")

    def patch(self, offset: int, fmt: str, *values: int) -> bytes:
        out = bytearray(self.blob)
        struct.pack_into("<" + fmt, out, offset, *values)
        return bytes(out)


@pytest.fixture(scope="module")
def elf(guest: Guest) -> Elf:
    return Elf(guest("elf_exports"))


# --- exports -------------------------------------------------------------------------------


def test_exports_have_the_design_selectors(elf: Elf) -> None:
    program = load_program(elf.blob)
    expected = {bytes.fromhex(sel): "athexp_" + name for name, sel in WALLET_SELECTORS.items()}
    assert program.export_names == expected
    assert set(program.exports) == set(expected)
    addresses = list(program.exports.values())
    assert len(set(addresses)) == len(addresses)
    assert all(address in program.code for address in addresses)
    assert program.entry == elf.entry


@pytest.mark.parametrize("name", WALLET_SELECTORS)
def test_each_export_runs_its_own_method(elf: Elf, name: str) -> None:
    result, _, _ = run_code(elf.blob, method=name)
    assert result.ok, result.reason
    assert result.output == name.encode()


def test_no_selector_runs_main(elf: Elf) -> None:
    result, _, _ = run_code(elf.blob)
    assert result.ok, result.reason
    assert result.output == b"main"


@pytest.mark.parametrize("name", ["transfer", "main", "athexp_", "spend2"])
def test_unknown_selector_fails(elf: Elf, name: str) -> None:
    result, _, _ = run_code(elf.blob, method=name, gas=1000)
    assert result.status == StatusCode.FAILURE
    assert result.reason is not None and result.reason.startswith("unknown selector")
    assert (result.gas_used, result.gas_left, result.output) == (1000, 0, b"")


def test_program_without_section_headers_loads_without_exports(elf: Elf) -> None:
    blob = elf.patch(E_SHOFF, "I", 0)
    program = load_program(blob)
    assert program.exports == {}
    result, _, _ = run_code(blob)
    assert result.output == b"main"


# --- malformed ELF files -------------------------------------------------------------------

Mutation = Callable[[Elf], bytes]


def _text(e: Elf) -> int:
    return e.segment(executable=True)


def _data(e: Elf) -> int:
    return e.segment(executable=False)


def _export_name_vaddr(e: Elf) -> int:
    return e.u32(e.exports + 5)


def _cut_data_inside_export_name(e: Elf) -> bytes:
    # The data segment's file bytes end three bytes into the first export's name.
    cut = _export_name_vaddr(e) + 3 - e.u32(_data(e) + P_VADDR)
    return e.patch(_data(e) + P_FILESZ, "I", cut)


def _non_ascii_export_name(e: Elf) -> bytes:
    at = e.vaddr_to_offset(_export_name_vaddr(e)) + len("athexp_")
    return e.blob[:at] + b"\xff" + e.blob[at + 1 :]


def _two_20_mib_segments(e: Elf) -> bytes:
    # Each fits the image limit alone; together they exceed it.
    data_vaddr = e.u32(_data(e) + P_VADDR)
    moved = Elf(e.patch(_data(e) + P_VADDR, "I", data_vaddr + (24 << 20)))
    return Elf(moved.patch(_text(e) + P_MEMSZ, "I", 20 << 20)).patch(
        _data(e) + P_MEMSZ, "I", 20 << 20
    )


def _duplicate_export(e: Elf) -> bytes:
    first = e.blob[e.exports : e.exports + 9]
    return e.blob[: e.exports + 9] + first + e.blob[e.exports + 18 :]


MALFORMED: dict[str, tuple[Mutation, str]] = {
    "empty": (lambda e: b"", "not an Athena program"),
    "no-magic": (lambda e: b"MZ" + e.blob[2:], "not an Athena program"),
    "truncated-header": (lambda e: e.blob[:51], "truncated ELF header: 51 bytes, need 52"),
    "magic-only": (lambda e: e.blob[:4], "truncated ELF header"),
    "class-64": (lambda e: e.patch(E_IDENT_CLASS, "B", 2), "not a 32-bit ELF"),
    "class-none": (lambda e: e.patch(E_IDENT_CLASS, "B", 0), "not a 32-bit ELF"),
    "big-endian": (lambda e: e.patch(E_IDENT_DATA, "B", 2), "not a little-endian ELF"),
    "machine-x86-64": (lambda e: e.patch(E_MACHINE, "H", 62), "not a RISC-V ELF: e_machine 62"),
    "machine-big-endian-riscv": (
        lambda e: e.patch(E_MACHINE, "H", 0xF300),
        "not a RISC-V ELF: e_machine 62208",
    ),
    "type-rel": (lambda e: e.patch(E_TYPE, "H", 1), "not an executable: e_type 1"),
    "type-dyn": (lambda e: e.patch(E_TYPE, "H", 3), "not an executable: e_type 3"),
    "type-core": (lambda e: e.patch(E_TYPE, "H", 4), "not an executable: e_type 4"),
    "truncated-program-headers": (
        lambda e: e.blob[: e.phdr(1) + 10],
        "truncated program header table",
    ),
    "program-headers-past-end": (
        lambda e: e.patch(E_PHOFF, "I", len(e.blob) - 40),
        "truncated program header table",
    ),
    "program-header-offset-huge": (
        lambda e: e.patch(E_PHOFF, "I", 0xFFFFFFF0),
        "truncated program header table",
    ),
    "no-program-headers": (lambda e: e.patch(E_PHNUM, "H", 0), "no program headers"),
    "too-many-program-headers": (
        lambda e: e.patch(E_PHNUM, "H", 0xFFFF),
        "65535 program headers, at most 64",
    ),
    "program-header-size": (
        lambda e: e.patch(E_PHENTSIZE, "H", 40),
        "program header entry size 40, expected 32",
    ),
    "segment-past-end": (
        lambda e: e.patch(_text(e) + P_OFFSET, "I", len(e.blob) - 4),
        "is past end of file",
    ),
    "segment-offset-huge": (
        lambda e: e.patch(_data(e) + P_OFFSET, "I", 0xFFFFFFFF),
        "is past end of file",
    ),
    "segment-filesz-huge": (
        lambda e: e.patch(_data(e) + P_FILESZ, "II", 0x7FFFFFFF, 0x7FFFFFFF),
        "is past end of file",
    ),
    "filesz-over-memsz": (
        lambda e: e.patch(_data(e) + P_MEMSZ, "I", e.u32(_data(e) + P_FILESZ) - 1),
        "exceeds memory size",
    ),
    "overlapping-segments": (
        lambda e: e.patch(_data(e) + P_VADDR, "I", e.u32(_text(e) + P_VADDR) + 8),
        "overlap",
    ),
    "same-address-segments": (
        lambda e: e.patch(_text(e) + P_VADDR, "I", e.u32(_data(e) + P_VADDR)),
        "overlap",
    ),
    "huge-segment": (
        lambda e: e.patch(_data(e) + P_MEMSZ, "I", 0x40000000),
        "loaded segments exceed 33554432 bytes",
    ),
    "huge-segments-together": (_two_20_mib_segments, "loaded segments exceed"),
    "segment-wraps-address-space": (
        lambda e: Elf(e.patch(_data(e) + P_VADDR, "I", 0xFFFFF000)).patch(
            _data(e) + P_MEMSZ, "I", 0x2000
        ),
        "wraps the address space",
    ),
    "no-executable-segment": (
        lambda e: e.patch(_text(e) + P_FLAGS, "I", 6),
        "no executable PT_LOAD segment",
    ),
    "code-segment-not-loaded": (
        lambda e: e.patch(_text(e) + P_TYPE, "I", 0),
        "no executable PT_LOAD segment",
    ),
    "code-segment-empty": (
        lambda e: e.patch(_text(e) + P_FILESZ, "I", 0),
        "no executable PT_LOAD segment",
    ),
    "code-segment-misaligned": (
        lambda e: e.patch(_text(e) + P_VADDR, "I", e.u32(_text(e) + P_VADDR) + 2),
        "is misaligned",
    ),
    "entry-in-data": (
        lambda e: e.patch(E_ENTRY, "I", e.u32(_data(e) + P_VADDR)),
        "is outside the code",
    ),
    "entry-zero": (lambda e: e.patch(E_ENTRY, "I", 0), "entry point 0x00000000 is outside"),
    "entry-past-code": (
        lambda e: e.patch(
            E_ENTRY, "I", e.u32(_text(e) + P_VADDR) + (e.u32(_text(e) + P_FILESZ) & ~3)
        ),
        "is outside the code",
    ),
    "entry-misaligned": (
        lambda e: e.patch(E_ENTRY, "I", e.entry + 2),
        "is not 4-byte aligned",
    ),
    "export-table-size": (
        lambda e: e.patch(e.shdr(b".note.athena_export") + SH_SIZE, "I", 9 * 7 - 1),
        "not a whole number of 9-byte records",
    ),
    "export-table-past-end": (
        lambda e: e.patch(e.shdr(b".note.athena_export") + SH_SIZE, "I", 9 * 100000),
        "past end of file",
    ),
    "export-version": (lambda e: e.patch(e.exports, "B", 1), "export record version 1"),
    "export-version-ff": (lambda e: e.patch(e.exports + 18, "B", 0xFF), "version 255"),
    "export-pointer-outside-code": (
        lambda e: e.patch(e.exports + 1, "I", 0x12345678),
        "export at 0x12345678 is not an instruction address",
    ),
    "export-pointer-misaligned": (
        lambda e: e.patch(e.exports + 1, "I", e.u32(e.exports + 1) + 1),
        "is not an instruction address",
    ),
    "export-pointer-into-data": (
        lambda e: e.patch(e.exports + 1, "I", _export_name_vaddr(e)),
        "is not an instruction address",
    ),
    "export-name-outside-segments": (
        lambda e: e.patch(e.exports + 5, "I", 0x10),
        "export name pointer 0x00000010 is outside the loaded segments",
    ),
    "export-name-without-prefix": (
        lambda e: e.patch(e.exports + 5, "I", _export_name_vaddr(e) + 1),
        "lacks the 'athexp_' prefix",
    ),
    "export-name-unterminated": (
        _cut_data_inside_export_name,
        "is unterminated or too long",
    ),
    "export-name-not-ascii": (_non_ascii_export_name, "is not ASCII"),
    "export-duplicate": (_duplicate_export, "duplicates selector"),
    "section-name-index": (
        lambda e: e.patch(E_SHSTRNDX, "H", 200),
        "section name table index 200 out of range",
    ),
    "section-header-size": (
        lambda e: e.patch(E_SHENTSIZE, "H", 20),
        "section header entry size 20, expected 40",
    ),
    "section-headers-past-end": (
        lambda e: e.patch(E_SHOFF, "I", len(e.blob) - 8),
        "truncated section header table",
    ),
    "too-many-sections": (
        lambda e: e.patch(E_SHNUM, "H", 5000),
        "5000 section headers, at most 4096",
    ),
    "raw-no-code": (lambda e: b"\x7fATH", "raw program has no instructions"),
    "raw-odd-length": (
        lambda e: b"\x7fATH" + bytes(6),
        "raw program length 6 is not a multiple of 4",
    ),
    "raw-too-big": (
        lambda e: b"\x7fATH" + bytes(MAX_CODE_BYTES + 4),
        f"exceeds {MAX_CODE_BYTES}",
    ),
}


@pytest.mark.parametrize(("mutate", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_program_is_refused(elf: Elf, mutate: Mutation, message: str) -> None:
    blob = mutate(elf)
    assert blob != elf.blob
    with pytest.raises(ProgramError, match=re.escape(message)) as caught:
        load_program(blob)
    assert type(caught.value) is ProgramError


def test_every_truncation_is_refused_or_loads(elf: Elf) -> None:
    """Cutting the file anywhere gives a ProgramError or a program, never another error."""
    refused = 0
    for length in range(len(elf.blob)):
        try:
            load_program(elf.blob[:length])
        except ProgramError:
            refused += 1
    # Only cuts inside the trailing section headers can still load (without exports).
    assert refused >= elf.u32(E_SHOFF)


def test_code_past_filesz_is_not_code(elf: Elf) -> None:
    """The .bss-like tail of an executable segment (memsz > filesz) holds no instructions."""
    text = elf.segment(executable=True)
    # Without section headers (so no exports), the last 16 code bytes leave the file.
    short = Elf(elf.patch(E_SHOFF, "I", 0)).patch(
        text + P_FILESZ, "I", elf.u32(text + P_FILESZ) - 16
    )
    program = load_program(short)
    end = elf.u32(text + P_VADDR) + elf.u32(text + P_FILESZ) - 16
    assert max(program.code) == end - 4
    assert load_program(elf.blob).code.keys() > program.code.keys()


# --- reproducible builds -------------------------------------------------------------------


def test_build_is_reproducible(tmp_path: Path) -> None:
    source = GUESTS / "elf_exports.c"
    first = build(source, tmp_path / "a" / "first.elf")
    second = build(source, tmp_path / "b" / "second.elf")
    assert first == second
    assert (tmp_path / "a" / "first.elf").read_bytes() == first

    # The same source from another directory builds the same bytes.
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    shutil.copyfile(source, elsewhere / source.name)
    assert build(elsewhere / source.name, tmp_path / "c.elf") == first
    load_program(first)


def test_build_with_local_header_is_reproducible(tmp_path: Path, guest: Guest) -> None:
    source = GUESTS / "sys_io.c"
    assert build(source, tmp_path / "io.elf") == guest("sys_io")
