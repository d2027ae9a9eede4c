"""Compile C guest programs to Athena RV32EM ELF files with the `ziglang` package's clang.

Builds are reproducible: sources are compiled from a scratch directory under fixed names,
without debug info or build ids, so the same source gives the same bytes anywhere.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from athena_vm.errors import VmError

SDK_DIR = Path(__file__).parent / "sdk"
TARGET_FLAGS = (
    "-target",
    "riscv32-freestanding-none",
    "-mcpu=generic_rv32+e+m",
    "-mabi=ilp32e",
)
COMPILE_FLAGS = (
    "-Os",
    "-g0",
    "-std=c11",
    "-Wall",
    "-Werror=implicit-function-declaration",
    "-ffreestanding",
    "-fno-pic",
    "-mno-relax",
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
)
LINK_FLAGS = (
    "-nostartfiles",
    "-static",
    "-Wl,--gc-sections",
    "-Wl,--build-id=none",
    "-Wl,-T,athena.ld",
)


class BuildError(VmError):
    """The C compiler refused the program; the message carries its diagnostics."""


def build(source: Path, output: Path, extra_sources: tuple[Path, ...] = ()) -> bytes:
    """Compile `source` (plus the SDK runtime) to `output`; return the ELF bytes."""
    source = Path(source)
    if not source.is_file():
        raise BuildError(f"no such source file: {source}")
    with tempfile.TemporaryDirectory(prefix="athena-build-") as scratch:
        work = Path(scratch)
        for name in ("athena.h", "athena_rt.c", "athena.ld"):
            shutil.copyfile(SDK_DIR / name, work / name)
        names = []
        for index, path in enumerate((source, *extra_sources)):
            name = f"unit{index}_{path.name}"
            shutil.copyfile(path, work / name)
            names.append(name)
        command = [
            sys.executable,
            "-m",
            "ziglang",
            "cc",
            *TARGET_FLAGS,
            *COMPILE_FLAGS,
            *LINK_FLAGS,
            "-I.",
            f"-I{source.parent.resolve()}",
            f"-ffile-prefix-map={work}=.",
            "athena_rt.c",
            *names,
            "-o",
            "program.elf",
        ]
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"compiling {source} failed:\n{done.stderr.strip()}")
        elf = (work / "program.elf").read_bytes()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(elf)
    return elf
