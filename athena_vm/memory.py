"""Sparse, paged, little-endian guest memory with a cap on touched pages.

Unwritten memory reads as zero without allocating. A page is allocated on first write,
and allocation beyond the cap faults instead of exhausting the host.
"""

import struct

from athena_vm.errors import failure

PAGE_BITS = 12
PAGE_SIZE = 1 << PAGE_BITS
PAGE_MASK = PAGE_SIZE - 1
ADDRESS_MASK = 0xFFFFFFFF
DEFAULT_MEMORY_CAP = 64 * 1024 * 1024

_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


class Memory:
    __slots__ = ("max_pages", "pages")

    def __init__(self, image: dict[int, bytes], cap_bytes: int = DEFAULT_MEMORY_CAP) -> None:
        self.max_pages = max(cap_bytes >> PAGE_BITS, 0)
        if len(image) > self.max_pages:
            raise failure(f"memory cap of {cap_bytes} bytes exceeded by the program image")
        self.pages: dict[int, bytearray] = {n: bytearray(p) for n, p in image.items()}

    @property
    def touched_bytes(self) -> int:
        return len(self.pages) << PAGE_BITS

    def _writable(self, addr: int) -> bytearray:
        number = addr >> PAGE_BITS
        page = self.pages.get(number)
        if page is None:
            if len(self.pages) >= self.max_pages:
                raise failure(
                    f"memory cap of {self.max_pages << PAGE_BITS} bytes exceeded "
                    f"writing 0x{addr:08x}"
                )
            page = self.pages[number] = bytearray(PAGE_SIZE)
        return page

    def load_u32(self, addr: int) -> int:
        page = self.pages.get(addr >> PAGE_BITS)
        return 0 if page is None else int(_U32.unpack_from(page, addr & PAGE_MASK)[0])

    def load_u16(self, addr: int) -> int:
        page = self.pages.get(addr >> PAGE_BITS)
        return 0 if page is None else int(_U16.unpack_from(page, addr & PAGE_MASK)[0])

    def load_u8(self, addr: int) -> int:
        page = self.pages.get(addr >> PAGE_BITS)
        return 0 if page is None else page[addr & PAGE_MASK]

    def store_u32(self, addr: int, value: int) -> None:
        _U32.pack_into(self._writable(addr), addr & PAGE_MASK, value)

    def store_u16(self, addr: int, value: int) -> None:
        _U16.pack_into(self._writable(addr), addr & PAGE_MASK, value & 0xFFFF)

    def store_u8(self, addr: int, value: int) -> None:
        self._writable(addr)[addr & PAGE_MASK] = value & 0xFF

    def read(self, addr: int, length: int) -> bytes:
        """Read `length` bytes; addresses wrap around at 2**32 like the guest's do."""
        out = bytearray()
        while length > 0:
            addr &= ADDRESS_MASK
            offset = addr & PAGE_MASK
            chunk = min(length, PAGE_SIZE - offset)
            page = self.pages.get(addr >> PAGE_BITS)
            out += bytes(chunk) if page is None else page[offset : offset + chunk]
            addr += chunk
            length -= chunk
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            addr &= ADDRESS_MASK
            offset = addr & PAGE_MASK
            chunk = min(len(view), PAGE_SIZE - offset)
            self._writable(addr)[offset : offset + chunk] = view[:chunk]
            addr += chunk
            view = view[chunk:]

    def read_cstring(self, addr: int, limit: int) -> bytes | None:
        """A NUL-terminated string of at most `limit` bytes, or None if unterminated."""
        data = self.read(addr, limit + 1)
        end = data.find(b"\0")
        return None if end < 0 else data[:end]
