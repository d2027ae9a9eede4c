"""Generate riscv-ctg architectural tests for chosen coverage labels (run as a subprocess).

    python ctg_generate.py OUT_DIR CGF [CGF ...] -- LABEL [LABEL ...]

Writes OUT_DIR/<label>-01.S for each label riscv_ctg can generate (fence has no template and
yields nothing). Run it with PYTHONHASHSEED fixed: riscv_ctg's constraint solving iterates
over sets, so the tests it picks depend on string hashing.

Two speed-ups that leave the output unchanged (byte-identical to unpatched riscv_ctg under
the same PYTHONHASHSEED on the labels checked):
- only the requested labels are expanded (riscv_isac expands every label of the cgf files);
- riscv_ctg evaluates its coverpoint strings with `eval` millions of times; each string is
  compiled once here, which makes generation several times faster (add: 200 s -> 20 s).
"""

import builtins
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import CodeType
from typing import Any

_COMPILED: dict[str, CodeType] = {}
_BUILTIN_EVAL = builtins.eval


def _cached_eval(
    source: str | CodeType,
    globals_: dict[str, Any] | None = None,
    locals_: Mapping[str, object] | None = None,
) -> Any:
    """`eval` with each source string compiled once; same scoping rules as `eval`."""
    if isinstance(source, str):
        code = _COMPILED.get(source)
        if code is None:
            code = _COMPILED[source] = compile(source, "<riscv_ctg>", "eval")
    else:
        code = source
    if globals_ is None:
        caller = sys._getframe(1)
        globals_ = caller.f_globals
        if locals_ is None:
            locals_ = caller.f_locals
    return _BUILTIN_EVAL(code, globals_, locals_)


def _template_without_other_extensions() -> dict[str, Any]:
    """riscv_ctg's instruction templates for the base and M instructions only.

    riscv_ctg parses all of its template files (about 0.5 MB of YAML); the integer
    templates need just the anchors of template.yaml's `metadata` block plus imc.yaml.
    """
    import riscv_ctg.constants as const
    import riscv_ctg.utils as ctg_utils

    data_dir = Path(const.template_files[0]).parent
    metadata: list[str] = []
    for line in (data_dir / "template.yaml").read_text().splitlines(keepends=True):
        if metadata and line[:1].isalpha() and not line.startswith("metadata:"):
            break
        metadata.append(line)
    text = "".join(metadata) + (data_dir / "imc.yaml").read_text()
    return dict(ctg_utils.yaml.load(text))


def main(argv: list[str]) -> int:
    split = argv.index("--")
    out_dir = Path(argv[0])
    cgf_files = argv[1:split]
    labels = argv[split + 1 :]

    import importlib

    import riscv_ctg.generator as ctg_generator
    from riscv_ctg.ctg import create_test

    cgf_normalize: Any = importlib.import_module("riscv_isac.cgf_normalize")
    ctg_generator.eval = _cached_eval
    load_cgf = cgf_normalize.utils.load_cgf

    def load_wanted(files: list[str]) -> Any:
        cgf = load_cgf(files)
        for label in list(cgf):
            if label != "datasets" and label not in labels:
                del cgf[label]
        return cgf

    cgf_normalize.utils.load_cgf = load_wanted
    templates = _template_without_other_extensions()
    cgf = cgf_normalize.expand_cgf(cgf_files, 32, 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    for label in labels:
        if label not in cgf:
            print(f"{label}: not in the cgf files", file=sys.stderr)
            continue
        started = time.monotonic()
        create_test("", cgf[label], label, "rv32e", None, templates, False, str(out_dir), 32, 0)
        print(f"{label}: {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
