"""Write docs/errors.md from the table of bad inputs in tests/test_errors.py.

    python scripts/make_error_table.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class TmpFactory:
    """The one method of pytest's tmp_path_factory that render_table uses."""

    def __init__(self, root):
        self.root, self.count = Path(root), 0

    def mktemp(self, name):
        self.count += 1
        path = self.root / f"{name}{self.count}"
        path.mkdir()
        return path


def main() -> int:
    from tests.test_errors import DOCS, render_table

    with tempfile.TemporaryDirectory() as root:
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(render_table(TmpFactory(root)))
    print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
