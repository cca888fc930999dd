"""A weights file that torch cannot read is named with the reason in words (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from camexp.core.errors import WeightsError
from camexp.models.cam_net import CAMNet


@pytest.mark.parametrize("content, reason", [
    (b"", r"the file is empty \(0 bytes\)"),
    (b"hello, these are not weights\n", r"it is not a file written by torch.save \(29 bytes of something else\)"),
    ("truncated", r"it is truncated or damaged \(\d+ bytes; its zip archive cannot be read\)"),
])
def test_an_unreadable_weights_file_says_why_in_words(tmp_path: Path, content, reason: str) -> None:
    path = tmp_path / "weights.pth"
    if content == "truncated":
        torch.save(CAMNet("tiny", num_classes=3, head_width=8).state_dict(), path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=rf"Could not read weights file .*weights.pth: {reason}.*"
                                           r"Point model.weights_path="):
        CAMNet("tiny", num_classes=3, head_width=8, weights_path=path)
