"""Sparse, paged, little-endian guest memory with a cap on touched pages.

Unwritten memory reads as zero without allocating. A page is allocated on first write,
and allocation beyond the cap faults instead of exhausting the host.

`Memory` is what the reference interpreter and the syscalls use. The translator
(`athena_vm.translator`) turns an execution's memory into a `CachedMemory`, which adds
`FastViews` (typed `memoryview`s of the same bytearrays, keyed so that one dict lookup both
finds the page and rejects a misaligned or out-of-range address) and a word cache.
"""

import struct
import sys
from typing import cast

from athena_vm.errors import failure

PAGE_BITS = 12
PAGE_SIZE = 1 << PAGE_BITS
PAGE_MASK = PAGE_SIZE - 1
ADDRESS_MASK = 0xFFFFFFFF
DEFAULT_MEMORY_CAP = 64 * 1024 * 1024

_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

#: Typed views use the host's byte order; they are only offered on little-endian hosts.
FAST_VIEWS_SUPPORTED = sys.byteorder == "little"
#: `address & KEY_U32` is the page's base address only when the address is 4-byte aligned
#: and below 2**32 (bits 2..11 are cleared, bits 0..1 and everything above 31 are kept).
KEY_U32 = ~(PAGE_MASK & ~3)
KEY_U16 = ~(PAGE_MASK & ~1)
KEY_U8 = ~PAGE_MASK
#: Pages read before ever being written get a shared zero view, up to this many per memory.
MAX_ZERO_VIEWS = 4096
#: Bound on the word cache; it is emptied when full.
MAX_CACHED_WORDS = 1 << 16

_ZERO_PAGE = bytes(PAGE_SIZE)
_ZERO_U16 = memoryview(_ZERO_PAGE).cast("H")


class FastViews:
    """Per-width views of the pages, keyed by page base address, and the word cache.

    A halfword load is `load_u16[addr & KEY_U16][(addr & 0xFFE) >> 1]`: a misaligned address,
    an address outside 0..2**32-1 (translated code may hold an unmasked sum) or a page never
    seen misses the dict, and the slow path (`CachedMemory.slow_load`) decides. The store
    dicts hold only allocated pages, so a store never lands in a shared zero page.

    `words` caches words of allocated pages by (aligned) address, and is authoritative for
    them: a translated word load or store that hits it is one dict operation, against four
    int operations and two lookups through the views. The page bytes behind a cached word
    may be stale; every `CachedMemory` method reads and writes through the cache, and
    `CachedMemory.flush_words` brings the pages up to date.
    """

    __slots__ = (
        "load_u8",
        "load_u16",
        "store_u8",
        "store_u16",
        "store_u32",
        "words",
    )

    def __init__(self) -> None:
        self.load_u8: dict[int, bytes | bytearray] = {}
        self.load_u16: dict[int, memoryview] = {}
        self.store_u8: dict[int, bytearray] = {}
        self.store_u16: dict[int, memoryview] = {}
        self.store_u32: dict[int, memoryview] = {}
        self.words: dict[int, int] = {}

    def add_page(self, number: int, page: bytearray) -> None:
        base = number << PAGE_BITS
        u16 = memoryview(page).cast("H")
        self.load_u8[base] = self.store_u8[base] = page
        self.load_u16[base] = self.store_u16[base] = u16
        self.store_u32[base] = memoryview(page).cast("I")

    def add_zero_page(self, number: int) -> None:
        base = number << PAGE_BITS
        self.load_u8[base] = _ZERO_PAGE
        self.load_u16[base] = _ZERO_U16


def _overlaps(word: int, addr: int, length: int) -> bool:
    """Whether the word at `word` (aligned) meets the range of `length` bytes at `addr`,
    which wraps at 2**32: either the word starts inside the range, or the range starts
    inside the word."""
    return (word - addr) & ADDRESS_MASK < length or (addr - word) & ADDRESS_MASK < 4


class Memory:
    """Guest memory as the reference interpreter and the syscalls use it.

    `cached()` turns it, in place, into a `CachedMemory` for translated code; plain memory
    pays nothing for that possibility but a check when a page is allocated.
    """

    __slots__ = ("max_pages", "pages", "views", "zero_views")

    def __init__(self, image: dict[int, bytes], cap_bytes: int = DEFAULT_MEMORY_CAP) -> None:
        self.max_pages = max(cap_bytes >> PAGE_BITS, 0)
        if len(image) > self.max_pages:
            raise failure(f"memory cap of {cap_bytes} bytes exceeded by the program image")
        self.pages: dict[int, bytearray] = {n: bytearray(p) for n, p in image.items()}
        self.views: FastViews | None = None
        self.zero_views = 0

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
            if self.views is not None:
                self.views.add_page(number, page)
        return page

    def cached(self) -> "CachedMemory":
        """This memory, with the fast views and the word cache of translated code."""
        if not FAST_VIEWS_SUPPORTED:
            raise RuntimeError("typed page views need a little-endian host")
        if self.views is None:
            self.views = FastViews()
            for number, page in self.pages.items():
                self.views.add_page(number, page)
            self.__class__ = CachedMemory
        return cast(CachedMemory, self)

    def flush_words(self) -> None:
        """Bring every page up to date (only a `CachedMemory` has anything to write)."""

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
        addr &= ADDRESS_MASK
        offset = addr & PAGE_MASK
        if 0 < length <= PAGE_SIZE - offset:  # within one page: most syscall buffers
            page = self.pages.get(addr >> PAGE_BITS)
            return bytes(length) if page is None else bytes(page[offset : offset + length])
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
        addr &= ADDRESS_MASK
        offset = addr & PAGE_MASK
        if 0 < len(data) <= PAGE_SIZE - offset:  # within one page: most syscall buffers
            self._writable(addr)[offset : offset + len(data)] = data
            return
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


class CachedMemory(Memory):
    """Memory as translated code uses it: through `FastViews` and the word cache.

    The word cache is authoritative for the words it holds (a page's bytes behind a cached
    word may be stale), so every access here goes through it; `flush_words` brings the pages
    up to date. The slow paths take any int congruent to the address modulo 2**32 (translated
    code may hold unmasked sums) and answer None or False where the reference would fault.
    """

    __slots__ = ()
    views: FastViews

    def flush_words(self) -> None:
        """Write every cached word to its page (they stay cached)."""
        pages = self.pages
        for addr, value in self.views.words.items():
            _U32.pack_into(pages[addr >> PAGE_BITS], addr & PAGE_MASK, value)

    def slow_load(self, addr: int, size: int) -> int | None:
        """A load the fast views missed: the value, or None where the reference faults.

        A page that is still unwritten gets a shared zero view (up to MAX_ZERO_VIEWS), so a
        loop reading it does not come back here.
        """
        addr &= ADDRESS_MASK
        if addr & (size - 1):
            return None
        number = addr >> PAGE_BITS
        if number not in self.pages and self.zero_views < MAX_ZERO_VIEWS:
            self.zero_views += 1
            self.views.add_zero_page(number)
        if size == 4:
            return self.load_u32(addr)
        return self.load_u16(addr) if size == 2 else self.load_u8(addr)

    def cached_load_u32(self, addr: int) -> int | None:
        """A word load that missed the cache: the value, or None where the reference faults.

        A word of an allocated page joins the cache (a full cache is flushed and emptied
        first); one of an unwritten page does not, so a cached word can always be stored to
        without allocating.
        """
        addr &= ADDRESS_MASK
        if addr & 3:
            return None
        value = self.load_u32(addr)
        if addr >> PAGE_BITS in self.pages:
            words = self.views.words
            if len(words) >= MAX_CACHED_WORDS:
                self.flush_words()
                words.clear()
            words[addr] = value
        return value

    def slow_store(self, addr: int, size: int, value: int) -> bool:
        """A store the fast path did not take: False (nothing stored) where the reference
        faults."""
        addr &= ADDRESS_MASK
        if addr & (size - 1):
            return False
        if addr >> PAGE_BITS not in self.pages and len(self.pages) >= self.max_pages:
            return False
        if size == 4:
            self.store_u32(addr, value)
        elif size == 2:
            self.store_u16(addr, value)
        else:
            self.store_u8(addr, value)
        return True

    def _sync_words(self, addr: int, length: int, drop: bool) -> None:
        """Write cached words overlapping the (wrapping) range to their pages; `drop`
        removes them from the cache as well."""
        words = self.views.words
        if not words or length <= 0:
            return
        spanned = ((addr & 3) + length + 3) >> 2
        if spanned < len(words):
            first = addr & ~3
            overlapping = [(first + 4 * i) & ADDRESS_MASK for i in range(spanned)]
        else:
            overlapping = [word for word in words if _overlaps(word, addr, length)]
        for word in overlapping:
            value = words.pop(word, None) if drop else words.get(word)
            if value is not None:
                _U32.pack_into(self.pages[word >> PAGE_BITS], word & PAGE_MASK, value)

    def _merge(self, addr: int, mask: int, value: int) -> None:
        """Bring a sub-word store into the cached word that holds it, if any."""
        words = self.views.words
        word = addr & ~3
        cached = words.get(word)
        if cached is not None:
            shift = (addr & 3) << 3
            words[word] = (cached & ~(mask << shift)) | ((value & mask) << shift)

    def load_u32(self, addr: int) -> int:
        cached = self.views.words.get(addr)
        return super().load_u32(addr) if cached is None else cached

    def load_u16(self, addr: int) -> int:
        cached = self.views.words.get(addr & ~3)
        if cached is None:
            return super().load_u16(addr)
        return (cached >> ((addr & 2) << 3)) & 0xFFFF

    def load_u8(self, addr: int) -> int:
        cached = self.views.words.get(addr & ~3)
        if cached is None:
            return super().load_u8(addr)
        return (cached >> ((addr & 3) << 3)) & 0xFF

    def store_u32(self, addr: int, value: int) -> None:
        super().store_u32(addr, value)
        words = self.views.words
        if addr in words:
            words[addr] = value

    def store_u16(self, addr: int, value: int) -> None:
        super().store_u16(addr, value)
        self._merge(addr, 0xFFFF, value)

    def store_u8(self, addr: int, value: int) -> None:
        super().store_u8(addr, value)
        self._merge(addr, 0xFF, value)

    def read(self, addr: int, length: int) -> bytes:
        self._sync_words(addr, length, drop=False)
        return super().read(addr, length)

    def write(self, addr: int, data: bytes) -> None:
        self._sync_words(addr, len(data), drop=True)
        super().write(addr, data)
