"""RISC-V architectural tests for RV32E and RV32EM: the Athena VM against Unicorn.

riscv-ctg (PyPI `riscv-ctg`) generates one assembly test per coverage label of the cgf files
in $ATHENA_CTG_CGF_DIR (default: shared/riscv-ctg-cgf beside the repository; dataset.cgf,
rv32e.cgf, rv32em.cgf). Each test is built with the ziglang clang against our own macro headers in
tests/conformance/arch/ (arch_test.h: the test macros, model_test.h: halt and signature dump
through the Athena syscalls, plus self-checks against riscv-ctg's expected values), then run
in the Athena VM and in Unicorn. Both must halt cleanly with identical signatures (the
memory the test writes its results to) and identical final registers.

Coverage: every label of rv32e.cgf and rv32em.cgf whose instruction the Athena VM has, i.e.
all of RV32EM but FENCE (fence is invalid in the VM; riscv-ctg 0.12.2 has no template for it
either). The cgf files have no CSR, EBREAK or compressed labels; any such label would be
skipped too.

CI runs the quick labels (shifts, loads, lui/auipc, jal/jalr) plus a seeded sample of the
slow-to-generate ones ($ATHENA_ARCH_SEED picks the sample); the rest is marked slow, so
`pytest -m slow` runs the remainder and `pytest -m '' tests/conformance/test_arch.py` all.
Generation dominates the cost (up to 40 s a label), so the generated sources are cached
across sessions under the system temp dir, keyed by the generator versions and inputs.
"""

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from athena_vm import ExecutionContext, ExecutionPayload, Payload, StatusCode, execute, load_program
from athena_vm.build import TARGET_FLAGS
from athena_vm.in_memory_host import InMemoryHost
from athena_vm.vm import GAS_PER_INSTRUCTION

ARCH_DIR = Path(__file__).parent / "arch"
GENERATOR = ARCH_DIR / "ctg_generate.py"
CGF_DIR = Path(
    os.environ.get(
        "ATHENA_CTG_CGF_DIR",
        str(Path(__file__).resolve().parents[3] / "shared" / "riscv-ctg-cgf"),
    )
)
DATASET_CGF = CGF_DIR / "dataset.cgf"
ISA_CGFS = {"RV32E": CGF_DIR / "rv32e.cgf", "RV32EM": CGF_DIR / "rv32em.cgf"}
CACHE_ROOT = Path(tempfile.gettempdir()) / "athena-arch-ctg"
SEED = int(os.environ.get("ATHENA_ARCH_SEED", "20240611"))

if not all(path.is_file() for path in (DATASET_CGF, *ISA_CGFS.values())):
    pytest.skip(f"riscv-ctg coverage files not found in {CGF_DIR}", allow_module_level=True)
if importlib.util.find_spec("riscv_ctg") is None:
    pytest.skip("riscv-ctg is not installed", allow_module_level=True)
unicorn: Any = pytest.importorskip("unicorn")
uc_riscv: Any = importlib.import_module("unicorn.riscv_const")

# --- which labels -----------------------------------------------------------------------

#: Mnemonics the Athena VM rejects as invalid instructions, and why.
UNSUPPORTED = {
    "fence": "FENCE is invalid in the Athena VM",
    "fence.i": "FENCE.I is invalid in the Athena VM",
    "ebreak": "EBREAK is invalid in the Athena VM",
    "ecall": "ECALL is an Athena syscall, not a plain trap",
}
#: Instructions whose labels riscv-ctg generates in about a second (CI runs them all).
QUICK = {"slli", "srli", "srai", "sll", "srl", "sra", "lui", "auipc", "jal", "jalr"}
QUICK |= {"lb", "lbu", "lh", "lhu", "lw"}
STORES = {"sb", "sh", "sw"}
#: How many of the slow labels CI samples: (RV32E ALU/branch, RV32E stores, RV32EM).
CI_SAMPLE = (3, 1, 2)


def _cgf_labels(path: Path) -> dict[str, list[str]]:
    """Top-level labels of a cgf file and the mnemonics each covers."""
    labels: dict[str, list[str]] = {}
    current: list[str] | None = None
    mnemonics_indent: int | None = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        top = re.fullmatch(r"([A-Za-z][\w.-]*):\s*", line)
        if top:
            current = labels.setdefault(top.group(1), [])
            mnemonics_indent = None
        elif current is not None and line.strip() == "mnemonics:":
            mnemonics_indent = indent
        elif mnemonics_indent is not None and current is not None:
            entry = re.fullmatch(r"\s*([\w.]+)\s*:.*", line)
            if indent > mnemonics_indent and entry:
                current.append(entry.group(1))
            else:
                mnemonics_indent = None
    return labels


def _unsupported(mnemonics: list[str]) -> str | None:
    for mnemonic in mnemonics:
        if mnemonic in UNSUPPORTED:
            return UNSUPPORTED[mnemonic]
        if mnemonic.startswith("c."):
            return "compressed instructions are invalid in the Athena VM"
        if mnemonic.startswith("csr"):
            return "CSR instructions are invalid in the Athena VM"
    return None


def _params() -> list[Any]:
    """One pytest param per label: skipped, in the CI selection, or slow."""
    rng = random.Random(SEED)
    params: list[Any] = []
    for isa, path in ISA_CGFS.items():
        labels = _cgf_labels(path)
        runnable = [label for label, mn in labels.items() if mn and not _unsupported(mn)]
        first = {label: labels[label][0] for label in runnable}
        quick = {lb for lb in runnable if first[lb] in QUICK}
        stores = sorted(lb for lb in runnable if first[lb] in STORES)
        others = sorted(set(runnable) - quick - set(stores))
        if isa == "RV32EM":
            chosen = set(rng.sample(others, min(CI_SAMPLE[2], len(others))))
        else:
            chosen = set(rng.sample(others, min(CI_SAMPLE[0], len(others))))
            chosen |= set(rng.sample(stores, min(CI_SAMPLE[1], len(stores))))
        for label, mnemonics in labels.items():
            test_id = f"{isa}-{label}"
            reason = _unsupported(mnemonics) if mnemonics else "no instruction in this label"
            if reason:
                params.append(pytest.param(label, id=test_id, marks=pytest.mark.skip(reason)))
            elif label in quick or label in chosen:
                params.append(pytest.param(label, id=test_id))
            else:
                params.append(pytest.param(label, id=test_id, marks=pytest.mark.slow))
    return params


# --- generation -------------------------------------------------------------------------


def _cost(label: str) -> int:
    """Rough generation seconds, to spread labels over the generator processes."""
    mnemonic = label.split("-")[0]
    if mnemonic in QUICK:
        return 1
    return 35 if mnemonic in STORES else 8


def _cache_dir() -> Path:
    """Cache folder for this generator: riscv-ctg's output depends on all of these."""
    digest = hashlib.sha256()
    for package in ("riscv-ctg", "riscv-isac", "python-constraint", "ruamel.yaml"):
        try:
            digest.update(f"{package}={importlib.metadata.version(package)};".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package}=?;".encode())
    for path in (GENERATOR, DATASET_CGF, *ISA_CGFS.values()):
        digest.update(path.read_bytes())
    return CACHE_ROOT / digest.hexdigest()[:20]


def _source_name(label: str) -> str:
    return f"{label}-01.S"


def generate(labels: list[str]) -> Path:
    """riscv-ctg sources for `labels` in the cache folder, generating the missing ones."""
    cache = _cache_dir()
    missing = sorted(lb for lb in labels if not (cache / _source_name(lb)).is_file())
    if not missing:
        return cache
    workers = max(1, min(os.cpu_count() or 1, 8, len(missing)))
    groups: list[list[str]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for label in sorted(missing, key=_cost, reverse=True):
        slot = loads.index(min(loads))
        groups[slot].append(label)
        loads[slot] += _cost(label)
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gen-", dir=CACHE_ROOT))
    try:
        cgfs = [str(DATASET_CGF), *map(str, ISA_CGFS.values())]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        runs = []
        for index, group in enumerate(g for g in groups if g):
            log = scratch / f"worker{index}.log"
            with log.open("w") as sink:
                command = [sys.executable, str(GENERATOR), str(scratch), *cgfs, "--", *group]
                process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
            runs.append((process, log))
        failures = [
            f"{log.name}:\n{log.read_text()[-4000:]}"
            for process, log in runs
            if process.wait() != 0
        ]
        if failures:
            raise RuntimeError("riscv_ctg generation failed:\n" + "\n".join(failures))
        cache.mkdir(parents=True, exist_ok=True)
        for produced in scratch.glob("*.S"):
            os.replace(produced, cache / produced.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cache


@pytest.fixture(scope="session")
def arch_sources(request: pytest.FixtureRequest) -> Path:
    """Generate, in one parallel batch, the sources of every selected test of this module."""
    here = Path(__file__).resolve()
    wanted: set[str] = {
        str(item.callspec.params["label"])
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.path.resolve() == here
        and hasattr(item, "callspec")
        and "label" in item.callspec.params
        and item.get_closest_marker("skip") is None
    }
    return generate(sorted(wanted))


# --- building ---------------------------------------------------------------------------

TEXT_BASE = 0x00200800
DATA_BASE = 0x10000000


def _header_constant(name: str) -> int:
    match = re.search(rf"#define {name} (\S+)", (ARCH_DIR / "arch_test.h").read_text())
    assert match, f"{name} is not defined in arch_test.h"
    return int(match[1], 0)


JAL_INLINE_MAX = _header_constant("ATH_JAL_INLINE_MAX")
_JAL_OP = re.compile(r"^\s*TEST_JAL_OP\(([^)]*)\)", re.MULTILINE)


def linker_script(source: str) -> str:
    """Code at TEXT_BASE, data at DATA_BASE, and one segment per far-jal distance.

    A jal of 2*imm bytes beyond ATH_JAL_INLINE_MAX lands in `.text.athena_far_<label>_<imm>`
    (see arch_test.h), placed exactly 2*imm bytes below (label 1b) or above (3f) `.text`.
    """
    far: dict[str, int] = {}
    for match in _JAL_OP.finditer(source):
        args = [arg.strip() for arg in match[1].split(",")]
        imm, label = args[2], args[3]
        distance = 2 * int(imm, 0)
        if distance > JAL_INLINE_MAX:
            name = f".text.athena_far_{label}_{imm}"
            far[name] = TEXT_BASE - distance if label == "1b" else TEXT_BASE + distance
    code = {".text": TEXT_BASE, **far}
    ordered = sorted(code.items(), key=lambda item: item[1])
    phdrs = [f"  code{i} PT_LOAD FLAGS(5);" for i in range(len(ordered))]
    sections = [
        f"  .text 0x{address:08x} : {{ *(.text.init) *(.text) }} :code{i}"
        if name == ".text"
        else f"  {name} 0x{address:08x} : {{ *({name}) }} :code{i}"
        for i, (name, address) in enumerate(ordered)
    ]
    return "\n".join(
        [
            "ENTRY(rvtest_entry_point)",
            "PHDRS {",
            *phdrs,
            "  data PT_LOAD FLAGS(6);",
            "}",
            "SECTIONS {",
            *sections,
            f"  .data 0x{DATA_BASE:08x} : {{ *(.data .data.* .sdata .sdata.*) }} :data",
            "  .bss : { *(.bss .bss.* .sbss .sbss.* COMMON) } :data",
            "  /DISCARD/ : { *(.riscv.attributes) *(.comment) *(.note.GNU-stack) }",
            "}",
            "",
        ]
    )


def build_test(source: Path, out_dir: Path) -> bytes:
    out_dir.mkdir(parents=True, exist_ok=True)
    script = out_dir / "link.ld"
    script.write_text(linker_script(source.read_text()))
    elf = out_dir / "test.elf"
    command = [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        *TARGET_FLAGS,
        "-mno-relax",
        "-g0",
        "-nostdlib",
        "-static",
        "-Wl,--build-id=none",
        f"-Wl,-T,{script}",
        "-Wl,--entry=rvtest_entry_point",
        f"-I{ARCH_DIR}",
        "-DTEST_CASE_1=1",
        "-DRVTEST_E=1",
        "-DATHENA_SELF_CHECK=1",
        str(source),
        "-o",
        str(elf),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"building {source.name} failed:\n{done.stderr[-4000:]}"
    return elf.read_bytes()


# --- running ----------------------------------------------------------------------------

SYS_HALT, SYS_WRITE, FD_OUTPUT = 0, 2, 3
ECALL_CAUSES = {8, 11}  # environment call from U-mode / M-mode
CANARY = 0x7E57CA4A
UNWRITTEN = 0xDEADBEEF
MAX_INSTRUCTIONS = 5_000_000
UC_REGS = [getattr(uc_riscv, f"UC_RISCV_REG_X{i}") for i in range(16)]


@dataclass
class Run:
    """How an engine ended: the HALT exit code (None if it never halted) and what it wrote."""

    exit_code: int | None
    output: bytes
    registers: tuple[int, ...]
    error: str | None = None


def run_vm(elf: bytes) -> Run:
    result = execute(
        load_program(elf),
        InMemoryHost(),
        ExecutionContext(callee=bytes(24)),
        ExecutionPayload(b"", Payload(None, b"")).encode(),
        GAS_PER_INSTRUCTION * MAX_INSTRUCTIONS,
    )
    if result.status == StatusCode.SUCCESS:
        return Run(0, result.output, result.registers)
    halted = re.search(r"guest halted with exit code (\d+)", result.reason or "")
    if halted:
        return Run(int(halted[1]), result.output, result.registers)
    return Run(None, result.output, result.registers, f"{result.status.name}: {result.reason}")


def load_segments(elf: bytes) -> list[tuple[int, bytes, int]]:
    """(vaddr, file bytes, memsz) of each PT_LOAD, read independently of the VM's loader."""
    phoff = struct.unpack_from("<I", elf, 28)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    segments = []
    for index in range(phnum):
        p_type, offset, vaddr, _, filesz, memsz, _, _ = struct.unpack_from(
            "<8I", elf, phoff + index * phentsize
        )
        if p_type == 1 and memsz:
            segments.append((vaddr, elf[offset : offset + filesz], memsz))
    return segments


def run_unicorn(elf: bytes) -> Run:
    uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV32)
    pages: set[int] = set()
    for vaddr, _, memsz in load_segments(elf):
        pages.update(range(vaddr >> 12, ((vaddr + memsz - 1) >> 12) + 1))
    for page in sorted(pages):
        uc.mem_map(page << 12, 0x1000, unicorn.UC_PROT_ALL)
    for vaddr, data, _ in load_segments(elf):
        uc.mem_write(vaddr, data)

    run = Run(None, b"", ())
    output = bytearray()

    def regs() -> tuple[int, ...]:
        return tuple(uc.reg_read(reg) for reg in UC_REGS)

    def on_interrupt(uc: Any, cause: int, _data: object) -> None:
        # Unicorn reports an ecall with pc already past it; returning resumes there.
        x = regs()
        number, fd, ptr, length = x[5], x[10], x[11], x[12]
        if cause not in ECALL_CAUSES:
            run.error = f"exception {cause} near pc 0x{uc.reg_read(uc_riscv.UC_RISCV_REG_PC):08x}"
        elif number == SYS_WRITE and fd == FD_OUTPUT:
            output.extend(uc.mem_read(ptr, length))
            return
        elif number == SYS_HALT:
            run.exit_code = fd
        else:
            run.error = f"unexpected syscall t0={number} a0={fd}"
        run.registers = x
        uc.emu_stop()

    uc.hook_add(unicorn.UC_HOOK_INTR, on_interrupt)
    entry = struct.unpack_from("<I", elf, 24)[0]
    try:
        uc.emu_start(entry, 0, count=MAX_INSTRUCTIONS)
    except unicorn.UcError as exc:
        run.error = f"{exc} at pc 0x{uc.reg_read(uc_riscv.UC_RISCV_REG_PC):08x}"
    if run.exit_code is None and run.error is None:
        run.error = f"no HALT within {MAX_INSTRUCTIONS} instructions"
    run.output = bytes(output)
    return run


# --- diagnostics ------------------------------------------------------------------------


def symbols(elf: bytes) -> dict[str, int]:
    """Names and values of the ELF's symbols (for locating a signature word)."""
    shoff = struct.unpack_from("<I", elf, 32)[0]
    shentsize, shnum = struct.unpack_from("<HH", elf, 46)
    headers = [struct.unpack_from("<10I", elf, shoff + i * shentsize) for i in range(shnum)]
    found: dict[str, int] = {}
    for header in headers:
        if header[1] != 2:  # SHT_SYMTAB
            continue
        strtab = headers[header[6]]
        names = elf[strtab[4] : strtab[4] + strtab[5]]
        for offset in range(header[4], header[4] + header[5], 16):
            name_at, value = struct.unpack_from("<II", elf, offset)
            name = names[name_at : names.index(b"\0", name_at)].decode()
            if name:
                found[name] = value
    return found


def locate(source: str, elf: bytes, word: int) -> str:
    """The test case that wrote signature word `word` (each macro writes one word)."""
    syms = symbols(elf)
    address = syms["athena_signature_begin"] + 4 * word
    areas = sorted((v, n) for n, v in syms.items() if n.startswith("signature_"))
    owner = [(value, name) for value, name in areas if value <= address]
    if not owner:
        return "the signature's leading canary"
    start, name = owner[-1]
    index = (address - start) // 4
    lines = source.splitlines()
    base = next((i for i, ln in enumerate(lines) if f",{name})" in ln.replace(" ", "")), None)
    if base is None:
        return f"{name} word {index}"
    cases = [ln for ln in lines[base + 1 :] if ln.lstrip().startswith("TEST_")]
    return f"{name} word {index}: {cases[index].strip() if index < len(cases) else '?'}"


def describe_exit(source: str, run: Run) -> str:
    if run.error:
        return run.error
    if run.exit_code:
        lines = source.splitlines()
        line = lines[run.exit_code - 1].strip() if run.exit_code <= len(lines) else "?"
        return f"self-check failed at line {run.exit_code}: {line}"
    return "halted"


# --- the test ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", _params())
def test_arch(label: str, arch_sources: Path, tmp_path: Path) -> None:
    source_path = arch_sources / _source_name(label)
    assert source_path.is_file(), f"riscv_ctg generated nothing for {label}"
    source = source_path.read_text()
    elf = build_test(source_path, tmp_path)

    ours = run_vm(elf)
    reference = run_unicorn(elf)

    assert reference.exit_code == ours.exit_code == 0, (
        f"unicorn: {describe_exit(source, reference)}; Athena VM: {describe_exit(source, ours)}"
    )
    assert len(reference.output) % 4 == 0 and len(reference.output) >= 8
    words = struct.unpack(f"<{len(reference.output) // 4}I", reference.output)
    assert words[0] == words[-1] == CANARY, "signature bounds are off"
    if not label.startswith(("sb", "sh")):
        unwritten = [i for i, word in enumerate(words) if word == UNWRITTEN]
        assert not unwritten, f"signature word never written: {locate(source, elf, unwritten[0])}"

    if ours.output != reference.output:
        mine = struct.unpack(f"<{len(ours.output) // 4}I", ours.output[: len(ours.output) & ~3])
        first = next(
            (i for i, (a, b) in enumerate(zip(mine, words, strict=False)) if a != b),
            min(len(mine), len(words)),
        )
        got = f"0x{mine[first]:08x}" if first < len(mine) else "nothing"
        want = f"0x{words[first]:08x}" if first < len(words) else "nothing"
        pytest.fail(
            f"signatures differ ({len(ours.output)} vs {len(reference.output)} bytes); first at "
            f"word {first}, {locate(source, elf, first)}: Athena VM {got}, unicorn {want}"
        )
    assert ours.registers == reference.registers, "final registers differ"


RV32EM = {
    *"lui auipc jal jalr beq bne blt bge bltu bgeu lb lh lw lbu lhu sb sh sw".split(),
    *"addi slti sltiu xori ori andi slli srli srai add sub sll slt sltu xor srl sra or and".split(),
    *"mul mulh mulhsu mulhu div divu rem remu".split(),
}


def test_labels_cover_rv32em() -> None:
    """Every RV32EM instruction but FENCE/ECALL/EBREAK has a runnable label; fence is skipped."""
    covered: set[str] = set()
    skipped: set[str] = set()
    for path in ISA_CGFS.values():
        for mnemonics in _cgf_labels(path).values():
            (skipped if _unsupported(mnemonics) else covered).update(mnemonics)
    assert covered == RV32EM
    assert skipped == {"fence"}
