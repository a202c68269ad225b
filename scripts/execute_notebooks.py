"""Run every tutorial in notebooks/ top to bottom in a fresh kernel and save it WITH its outputs,
so the notebooks read well on a code-hosting site, and rewrite each one's text twin in notebooks/text/
(scripts/notebook_text.py). CI executes fresh copies (tests/test_notebooks.py, through ``--to``).

    pip install -e ".[test,oracle]" && minibertgen fetch minilm-l6 && python scripts/execute_notebooks.py [NAME ...]

``--to DIR`` writes the executed copies into DIR instead (the committed notebooks and twins stay as
they are) and exits 1, with the failing cell on stderr, when a cell raises.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_S = 600  # per cell; tests/test_notebooks.py says what it is sized for


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (stem or file name); default: all")
    parser.add_argument("--to", type=Path, help="write the executed notebooks here, not over the committed ones")
    args = parser.parse_args(argv)

    import nbclient
    import nbformat

    from notebook_text import write as write_text_twins  # this folder is on sys.path when run as a script

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # see tests/test_notebooks.py: one BLAS thread per kernel
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        unknown = sorted(set(args.names) - {p.stem for p in paths} - {p.name for p in paths})
        if unknown:
            parser.error(f"no notebook named {', '.join(unknown)} in {NOTEBOOKS}")
        paths = [p for p in paths if p.stem in args.names or p.name in args.names]
    for path in paths:
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, startup_timeout=120, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOKS)}})  # fmt: skip
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as exc:
            print(f"{path.name} failed in a fresh kernel:\n{exc}", file=sys.stderr)
            return 1
        written = args.to / path.name if args.to else path
        written.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, written)
        if not args.to:
            write_text_twins([path])
        print(f"{path.name}: {time.perf_counter() - start:.0f} s, {written.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
