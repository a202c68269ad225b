"""Run every tutorial in notebooks/ top to bottom in a fresh kernel and save it WITH its outputs,
so the notebooks read well on a code-hosting site, and rewrite each one's text twin in notebooks/text/
(scripts/notebook_text.py). CI executes fresh copies (tests/test_notebooks.py).

    pip install -e ".[test,oracle]" && minibertgen fetch minilm-l6 && python scripts/execute_notebooks.py [NAME ...]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def main(names) -> int:
    import nbclient
    import nbformat

    from notebook_text import write as write_text_twins  # this folder is on sys.path when run as a script

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # see tests/test_notebooks.py: one BLAS thread per kernel
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if names:
        paths = [p for p in paths if p.stem in names or p.name in names]
    for path in paths:
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(notebook, timeout=600, startup_timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # fmt: skip
        nbformat.write(notebook, path)
        write_text_twins([path])
        print(f"{path.name}: {time.perf_counter() - start:.0f} s, {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
