"""The localization library must import without Lightning."""

from __future__ import annotations

import subprocess
import sys


def test_import_without_lightning() -> None:
    code = (
        "import sys, camexp.localization, camexp.data.metadata\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
