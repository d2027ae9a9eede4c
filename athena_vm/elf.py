"""ELF32 little-endian RISC-V executables: PT_LOAD segments and `.note.athena_export`.

Parsed by hand with `struct` rather than with a general ELF library: what loads is part of
consensus (deploy accepts or refuses code), so every rule is explicit here and cannot drift
with a dependency's leniency, and every malformed input gets a precise `ProgramError`.
"""

import itertools
import struct
from collections.abc import Mapping

import blake3

from athena_vm.errors import ProgramError
from athena_vm.payload import EXPORT_PREFIX, selector
from athena_vm.program import (
    MAX_CODE_BYTES,
    MAX_IMAGE_BYTES,
    Program,
    Segment,
    build_image,
    decode_code,
)

EM_RISCV = 243
ET_EXEC = 2
PT_LOAD = 1
PF_X = 1
EXPORT_SECTION = b".note.athena_export"
EXPORT_RECORD = struct.Struct("<BII")
MAX_SYMBOL_LENGTH = 256
MAX_PROGRAM_HEADERS = 64
MAX_SECTIONS = 4096

_HEADER = struct.Struct("<16sHHIIIIIHHHHHH")
_PHDR = struct.Struct("<IIIIIIII")
_SHDR = struct.Struct("<IIIIIIIIII")


def load_elf(blob: bytes) -> Program:
    if len(blob) < _HEADER.size:
        raise ProgramError(f"truncated ELF header: {len(blob)} bytes, need {_HEADER.size}")
    (
        ident,
        e_type,
        e_machine,
        _version,
        entry,
        phoff,
        shoff,
        _flags,
        _ehsize,
        phentsize,
        phnum,
        shentsize,
        shnum,
        shstrndx,
    ) = _HEADER.unpack_from(blob)
    if ident[4] != 1:
        raise ProgramError("not a 32-bit ELF (EI_CLASS must be ELFCLASS32)")
    if ident[5] != 1:
        raise ProgramError("not a little-endian ELF (EI_DATA must be ELFDATA2LSB)")
    if e_machine != EM_RISCV:
        raise ProgramError(f"not a RISC-V ELF: e_machine {e_machine}, expected {EM_RISCV}")
    if e_type != ET_EXEC:
        raise ProgramError(f"not an executable: e_type {e_type}, expected ET_EXEC")
    segments = _segments(blob, phoff, phentsize, phnum)
    code = {}
    for seg in segments:
        if seg.executable:
            code.update(decode_code(seg.vaddr, seg.data))
    if not code:
        raise ProgramError("no executable PT_LOAD segment with code")
    if entry & 3:
        raise ProgramError(f"entry point 0x{entry:08x} is not 4-byte aligned")
    if entry not in code:
        raise ProgramError(f"entry point 0x{entry:08x} is outside the code")
    image = build_image(segments)
    exports, names = _exports(blob, shoff, shentsize, shnum, shstrndx, segments, code)
    return Program(code, image, entry, exports, names, blake3.blake3(blob).digest())


def _table(blob: bytes, offset: int, entsize: int, count: int, expected: int, what: str) -> None:
    if entsize != expected:
        raise ProgramError(f"{what} entry size {entsize}, expected {expected}")
    if offset + entsize * count > len(blob):
        raise ProgramError(f"truncated {what} table at offset {offset}")


def _segments(blob: bytes, phoff: int, phentsize: int, phnum: int) -> list[Segment]:
    if phnum == 0:
        raise ProgramError("no program headers")
    if phnum > MAX_PROGRAM_HEADERS:
        raise ProgramError(f"{phnum} program headers, at most {MAX_PROGRAM_HEADERS}")
    _table(blob, phoff, phentsize, phnum, _PHDR.size, "program header")
    segments: list[Segment] = []
    total = code_bytes = 0
    for index in range(phnum):
        p_type, offset, vaddr, _paddr, filesz, memsz, flags, _align = _PHDR.unpack_from(
            blob, phoff + index * phentsize
        )
        if p_type != PT_LOAD or memsz == 0:
            continue
        if filesz > memsz:
            raise ProgramError(f"segment {index}: file size {filesz} exceeds memory size {memsz}")
        if offset + filesz > len(blob):
            raise ProgramError(f"segment {index}: data at {offset}+{filesz} is past end of file")
        if vaddr + memsz > 1 << 32:
            raise ProgramError(f"segment {index}: 0x{vaddr:08x}+{memsz} wraps the address space")
        total += memsz
        if total > MAX_IMAGE_BYTES:
            raise ProgramError(f"loaded segments exceed {MAX_IMAGE_BYTES} bytes")
        executable = bool(flags & PF_X)
        if executable:
            if vaddr & 3:
                raise ProgramError(f"segment {index}: code address 0x{vaddr:08x} is misaligned")
            code_bytes += filesz
            if code_bytes > MAX_CODE_BYTES:
                raise ProgramError(f"code exceeds {MAX_CODE_BYTES} bytes")
        segments.append(Segment(vaddr, blob[offset : offset + filesz], memsz, executable))
    ordered = sorted(segments, key=lambda s: s.vaddr)
    for low, high in itertools.pairwise(ordered):
        if low.vaddr + low.memsz > high.vaddr:
            raise ProgramError(f"segments at 0x{low.vaddr:08x} and 0x{high.vaddr:08x} overlap")
    return segments


def _section_bytes(blob: bytes, offset: int, size: int, what: str) -> bytes:
    if offset + size > len(blob):
        raise ProgramError(f"section {what} at {offset}+{size} is past end of file")
    return blob[offset : offset + size]


def _find_export_section(
    blob: bytes, shoff: int, shentsize: int, shnum: int, shstrndx: int
) -> bytes | None:
    if shoff == 0 or shnum == 0:
        return None
    if shnum > MAX_SECTIONS:
        raise ProgramError(f"{shnum} section headers, at most {MAX_SECTIONS}")
    _table(blob, shoff, shentsize, shnum, _SHDR.size, "section header")
    if shstrndx >= shnum:
        raise ProgramError(f"section name table index {shstrndx} out of range")
    names_hdr = _SHDR.unpack_from(blob, shoff + shstrndx * shentsize)
    names = _section_bytes(blob, names_hdr[4], names_hdr[5], "names")
    for index in range(shnum):
        hdr = _SHDR.unpack_from(blob, shoff + index * shentsize)
        name_offset, sh_type, offset, size = hdr[0], hdr[1], hdr[4], hdr[5]
        end = names.find(b"\0", name_offset)
        if name_offset < len(names) and end >= 0 and names[name_offset:end] == EXPORT_SECTION:
            if sh_type == 8:  # SHT_NOBITS: an empty export table
                return b""
            return _section_bytes(blob, offset, size, EXPORT_SECTION.decode())
    return None


def _exports(
    blob: bytes,
    shoff: int,
    shentsize: int,
    shnum: int,
    shstrndx: int,
    segments: list[Segment],
    code: Mapping[int, object],
) -> tuple[dict[bytes, int], dict[bytes, str]]:
    table = _find_export_section(blob, shoff, shentsize, shnum, shstrndx)
    if not table:
        return {}, {}
    if len(table) % EXPORT_RECORD.size:
        raise ProgramError(
            f"export table of {len(table)} bytes is not a whole number of "
            f"{EXPORT_RECORD.size}-byte records"
        )
    exports: dict[bytes, int] = {}
    names: dict[bytes, str] = {}
    for offset in range(0, len(table), EXPORT_RECORD.size):
        version, address, symbol_ptr = EXPORT_RECORD.unpack_from(table, offset)
        if version != 0:
            raise ProgramError(f"export record version {version}, expected 0")
        if address not in code:
            raise ProgramError(f"export at 0x{address:08x} is not an instruction address")
        name = _symbol(segments, symbol_ptr)
        if not name.startswith(EXPORT_PREFIX):
            raise ProgramError(f"export name {name!r} lacks the {EXPORT_PREFIX!r} prefix")
        chosen = selector(name)
        if chosen in exports:
            raise ProgramError(f"export {name!r} duplicates selector {chosen.hex()}")
        exports[chosen] = address
        names[chosen] = name
    return exports, names


def _symbol(segments: list[Segment], ptr: int) -> str:
    for seg in segments:
        if seg.vaddr <= ptr < seg.vaddr + len(seg.data):
            data = seg.data[ptr - seg.vaddr : ptr - seg.vaddr + MAX_SYMBOL_LENGTH + 1]
            end = data.find(b"\0")
            if end < 0:
                raise ProgramError(f"export name at 0x{ptr:08x} is unterminated or too long")
            try:
                return data[:end].decode("ascii")
            except UnicodeDecodeError:
                raise ProgramError(f"export name at 0x{ptr:08x} is not ASCII") from None
    raise ProgramError(f"export name pointer 0x{ptr:08x} is outside the loaded segments")
