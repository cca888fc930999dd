"""``python -m camexp.eval_maps``'s output file: refused before the evaluation when it cannot
be written (a folder, a path under a file), and the numbers kept when writing fails after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.datasets import box_metadata_with_perfect_maps

REPO = Path(__file__).resolve().parents[1]


def _eval_maps(tmp_path: Path, output: str) -> subprocess.CompletedProcess:
    meta, maps = box_metadata_with_perfect_maps(tmp_path)
    return subprocess.run([sys.executable, "-m", "camexp.eval_maps", f"maps_dir={maps}",
                           f"metadata_dir={meta}", "cam_curve_interval=0.01", f"output={output}",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_an_output_that_cannot_be_a_file_is_one_paragraph_before_the_evaluation(tmp_path: Path, where: str) -> None:
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("")
    output = tmp_path / ("a_folder" if where == "folder" else "a_file/result.json")
    done = _eval_maps(tmp_path, str(output))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "eval_maps: 2 images" not in done.stdout
    expected = (f"output={output} is a folder; name the result file, e.g. output={output}/eval_maps.json"
                if where == "folder" else
                f"output={output} cannot be written: {tmp_path / 'a_file'} is a file, not a folder.")
    assert done.stderr.startswith(f"eval_maps: error: {expected}"), done.stderr


def test_an_output_that_fails_to_write_keeps_the_numbers(tmp_path: Path, monkeypatch) -> None:
    import errno

    from camexp.core.errors import EvalMapsError
    from camexp.eval_maps import run
    from tests.helpers.configs import compose_config

    def disk_full(result, output):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output))

    meta, maps = box_metadata_with_perfect_maps(tmp_path)
    monkeypatch.setattr("camexp.eval_maps.write_result", disk_full)
    cfg = compose_config("eval_maps", [f"maps_dir={maps}", f"metadata_dir={meta}", "cam_curve_interval=0.01",
                                       f"output={tmp_path / 'result.json'}"], tmp_path / "run", tmp_path)
    with pytest.raises(EvalMapsError, match=r"result.json cannot be written \(No space left on device\); the "
                                            r"evaluation gave: eval_maps: 2 images: MaxBoxAcc=100.00"):
        run(cfg)
