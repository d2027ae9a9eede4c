"""A loaded program: predecoded code, the initial memory image, entry point and exports."""

from dataclasses import dataclass, field

import blake3

from athena_vm.decode import decode
from athena_vm.errors import ProgramError
from athena_vm.machine import Instr
from athena_vm.memory import PAGE_BITS, PAGE_MASK, PAGE_SIZE

RAW_MAGIC = b"\x7fATH"
ELF_MAGIC = b"\x7fELF"
#: Bounds that keep loading cheap whatever the bytes: code words and image size.
MAX_CODE_BYTES = 4 * 1024 * 1024
MAX_IMAGE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Segment:
    vaddr: int
    data: bytes
    memsz: int
    executable: bool


@dataclass(frozen=True, slots=True)
class Program:
    code: dict[int, Instr]
    image: dict[int, bytes]
    entry: int
    exports: dict[bytes, int] = field(default_factory=dict)
    export_names: dict[bytes, str] = field(default_factory=dict)
    code_hash: bytes = b""

    def export_address(self, selector: bytes) -> int | None:
        return self.exports.get(selector)


def decode_code(vaddr: int, data: bytes) -> dict[int, Instr]:
    """Decode every whole word of an executable segment, keyed by its address."""
    code: dict[int, Instr] = {}
    for offset in range(0, len(data) - 3, 4):
        code[vaddr + offset] = decode(int.from_bytes(data[offset : offset + 4], "little"))
    return code


def build_image(segments: list[Segment]) -> dict[int, bytes]:
    """Pages holding file data; the zero-filled rest (.bss) reads as unwritten memory."""
    pages: dict[int, bytearray] = {}
    for seg in segments:
        addr = seg.vaddr
        view = memoryview(seg.data)
        while view:
            offset = addr & PAGE_MASK
            chunk = min(len(view), PAGE_SIZE - offset)
            page = pages.setdefault(addr >> PAGE_BITS, bytearray(PAGE_SIZE))
            page[offset : offset + chunk] = view[:chunk]
            addr += chunk
            view = view[chunk:]
    return {number: bytes(page) for number, page in sorted(pages.items())}


def load_raw(blob: bytes) -> Program:
    """`\\x7fATH` followed by instruction words loaded (and entered) at address 0."""
    body = blob[len(RAW_MAGIC) :]
    if not body:
        raise ProgramError("raw program has no instructions")
    if len(body) % 4:
        raise ProgramError(f"raw program length {len(body)} is not a multiple of 4")
    if len(body) > MAX_CODE_BYTES:
        raise ProgramError(f"raw program of {len(body)} bytes exceeds {MAX_CODE_BYTES}")
    segment = Segment(0, body, len(body), True)
    return Program(
        code=decode_code(0, body),
        image=build_image([segment]),
        entry=0,
        code_hash=blake3.blake3(blob).digest(),
    )


def load_program(blob: bytes) -> Program:
    """Load an ELF or raw Athena program; raise ProgramError with the reason otherwise."""
    from athena_vm.elf import load_elf

    if blob.startswith(RAW_MAGIC):
        return load_raw(blob)
    if blob.startswith(ELF_MAGIC):
        return load_elf(blob)
    raise ProgramError("not an Athena program: expected an ELF file or the raw \\x7fATH format")


_CACHE: dict[bytes, Program] = {}
_CACHE_LIMIT = 256


def cached_program(blob: bytes) -> Program:
    """load_program, memoised by the code's blake3 hash (templates are loaded repeatedly)."""
    key = blake3.blake3(blob).digest()
    program = _CACHE.get(key)
    if program is None:
        program = load_program(blob)
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = program
    return program
