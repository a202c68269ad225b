"""The notebooks' text twins: ``notebooks/text/NAME.py`` holds the cells of ``notebooks/NAME.ipynb``
as plain text (jupytext's py:percent format, outputs left out), so a change to a tutorial reads as
an ordinary diff in review.

    python scripts/notebook_text.py            # rewrite every twin from its notebook
    python scripts/notebook_text.py --check    # exit 1 naming each twin that is stale or missing

``scripts/execute_notebooks.py`` rewrites the twin of each notebook it saves, and
``tests/test_notebooks.py`` fails when a twin and its notebook disagree. The format: a ``# %%`` line
opens a code cell, ``# %% [markdown]`` a markdown cell whose lines are commented with ``# ``.
jupytext reads it back (``jupytext.read(path, fmt="py:percent")``: the same cells, plus the header
comment as a first code cell; checked with jupytext 1.19.6), but the ``.ipynb`` file stays the
source of truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TEXT = NOTEBOOKS / "text"
HEADER = "# Text twin of notebooks/{name}.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.\n"


def render(notebook: dict, name: str) -> str:
    """One notebook's cells as py:percent text."""
    parts = [HEADER.format(name=name)]
    for cell in notebook["cells"]:
        source = "".join(cell["source"]).rstrip("\n")
        if cell["cell_type"] == "code":
            parts.append("# %%\n" + source + "\n")
        else:  # markdown (and raw): every line commented, empty lines as a bare '#'
            lines = [("# " + line) if line else "#" for line in source.split("\n")]
            parts.append(f"# %% [{cell['cell_type']}]\n" + "\n".join(lines) + "\n")
    return "\n".join(parts)


def twin_of(path: Path) -> Path:
    return TEXT / f"{path.stem}.py"


def expected_twins() -> dict[Path, str]:
    """Each twin's path and the text it must hold, from the notebooks as committed."""
    return {twin_of(p): render(json.loads(p.read_text(encoding="utf-8")), p.stem) for p in sorted(NOTEBOOKS.glob("*.ipynb"))}


def stale() -> list[str]:
    """The twins that are missing, differ from their notebook, or have no notebook."""
    wanted = expected_twins()
    problems = [f"{t.name}: stale or missing" for t, text in wanted.items()
                if not t.exists() or t.read_text(encoding="utf-8") != text]  # fmt: skip
    problems += [f"{t.name}: no notebooks/{t.stem}.ipynb" for t in sorted(TEXT.glob("*.py")) if t not in wanted]
    return problems


def write(paths=None) -> None:
    TEXT.mkdir(exist_ok=True)
    for path in paths or sorted(NOTEBOOKS.glob("*.ipynb")):
        twin_of(path).write_text(render(json.loads(path.read_text(encoding="utf-8")), path.stem), encoding="utf-8")
    for twin in TEXT.glob("*.py"):
        if not (NOTEBOOKS / f"{twin.stem}.ipynb").exists():
            twin.unlink()  # its notebook was renamed or removed


def main(argv) -> int:
    if argv == ["--check"]:
        problems = stale()
        print("\n".join(problems) or "every text twin matches its notebook")
        return 1 if problems else 0
    if argv:
        print(__doc__)
        return 2
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
