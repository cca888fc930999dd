"""Importing camexp changes nothing outside it: no matplotlib backend chosen, no warning filter
and no logging filter installed. Those are set where they are needed (the drawing code uses
matplotlib's object API; the trainer's builder and the data checks hide their notices)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "camexp"

# run in a fresh interpreter: every module of the package imported once, with spies on the
# functions that change global state, noting calls made from camexp's own files
PROBE = r"""
import importlib, json, logging, sys, warnings
from pathlib import Path

import matplotlib

package = Path(sys.argv[1])
sys.path.insert(0, str(package.parent))
calls = []

def spy(name, original):
    def wrapper(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if caller.startswith(str(package)):
            calls.append(f"{name} from {Path(caller).relative_to(package.parent)}")
        return original(*args, **kwargs)
    return wrapper

warnings.filterwarnings = spy("warnings.filterwarnings", warnings.filterwarnings)
warnings.simplefilter = spy("warnings.simplefilter", warnings.simplefilter)
matplotlib.use = spy("matplotlib.use", matplotlib.use)
logging.Filterer.addFilter = spy("logging addFilter", logging.Filterer.addFilter)
backend = matplotlib.rcParams._get_backend_or_none()
modules = []
for path in sorted(package.rglob("*.py")):
    parts = path.relative_to(package.parent).with_suffix("").parts
    if parts[-1] != "__main__":
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
for name in modules:
    importlib.import_module(name)
print(json.dumps({"modules": len(modules), "calls": calls,
                  "backend": [backend, matplotlib.rcParams._get_backend_or_none()]}))
"""


def _probe(package: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(package)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_every_camexp_module_leaves_backend_and_filters_as_they_were() -> None:
    found = _probe(PACKAGE)
    assert found["modules"] > 80  # the walk found the package
    assert found["calls"] == []
    assert found["backend"][1] == found["backend"][0]


def test_the_probe_sees_a_planted_import_time_filter(tmp_path: Path) -> None:
    planted = tmp_path / "plantedpkg"  # a package of its own name: found on the path given
    (planted / "plotting").mkdir(parents=True)
    (planted / "__init__.py").write_text("")
    (planted / "plotting" / "plots.py").write_text(
        "import warnings\nimport matplotlib\n\nmatplotlib.use('Agg')\n"
        "warnings.filterwarnings('ignore', message='x')\n")
    found = _probe(planted)
    assert found["calls"] == ["matplotlib.use from plantedpkg/plotting/plots.py",
                              "warnings.filterwarnings from plantedpkg/plotting/plots.py"]
    assert found["backend"][1].lower() == "agg" != found["backend"][0]
