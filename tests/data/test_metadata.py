"""The metadata folder reader (docs/datasets.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camexp.core.errors import MetadataError, UserError
from camexp.data.metadata import read_image_ids, read_metadata, resolve_split_dir


def write_split(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


CUB_FILES = {
    "image_ids.txt": "a/1.jpg\na/2.jpg\nb/3.jpg\n",
    "class_labels.txt": "a/1.jpg,0\na/2.jpg,0\nb/3.jpg,1\n",
    "image_sizes.txt": "a/1.jpg,500,400\na/2.jpg,100,100\nb/3.jpg,64,48\n",
    "localization.txt": "a/1.jpg,60,27,385,331\na/2.jpg,0,0,100,100\nb/3.jpg,1.5,2,10,20\n"
    "b/3.jpg,30,30,64,48\n",
}


def test_reads_a_box_split(tmp_path: Path) -> None:
    write_split(tmp_path / "CUB" / "test", CUB_FILES)
    meta = read_metadata(tmp_path / "CUB", "test")
    assert meta.folder == tmp_path / "CUB" / "test"
    assert meta.image_ids == ["a/1.jpg", "a/2.jpg", "b/3.jpg"]
    assert meta.class_labels == {"a/1.jpg": 0, "a/2.jpg": 0, "b/3.jpg": 1}
    assert meta.image_sizes["a/1.jpg"] == (500, 400)
    assert meta.has_boxes and not meta.has_masks
    assert meta.boxes["b/3.jpg"].dtype == np.float64
    assert meta.boxes["b/3.jpg"].tolist() == [[1.5, 2, 10, 20], [30, 30, 64, 48]]
    # the split folder itself works too
    assert read_metadata(tmp_path / "CUB" / "test").image_ids == meta.image_ids


def test_reads_a_mask_split(tmp_path: Path) -> None:
    files = {
        "image_ids.txt": "t/x.jpg\nt/y.jpg\n",
        "class_labels.txt": "t/x.jpg,3\nt/y.jpg,4\n",
        "localization.txt": "t/x.jpg,t/x_m1.png,t/x_ignore.png\nt/x.jpg,t/x_m2.png,\n"
        "t/y.jpg,t/y_m1.png,\n",
    }
    meta = read_metadata(write_split(tmp_path / "OpenImages" / "val", files))
    assert meta.has_masks and not meta.has_boxes
    assert meta.mask_paths == {"t/x.jpg": ["t/x_m1.png", "t/x_m2.png"], "t/y.jpg": ["t/y_m1.png"]}
    assert meta.ignore_paths == {"t/x.jpg": "t/x_ignore.png", "t/y.jpg": None}
    assert meta.image_sizes is None


def test_resolve_split_dir(tmp_path: Path) -> None:
    split = write_split(tmp_path / "m" / "val", {"image_ids.txt": "a\n"})
    assert resolve_split_dir(tmp_path / "m", "val") == split
    assert resolve_split_dir(split, "val") == split
    with pytest.raises(MetadataError, match="no metadata found"):
        resolve_split_dir(tmp_path / "m", "test")


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("localization.txt", "a/1.jpg,60,27,385\n", r"localization.txt:1: .*boxes"),
        ("localization.txt", "a/1.jpg,1,1,5,5\na/2.jpg,50,0,10,10\n", r":2: .*x1 < x0"),
        ("localization.txt", "a/1.jpg,1,1,5,5\na/2.jpg,0,0,101,10\n", r":2: .*outside the image"),
        ("localization.txt", "a/1.jpg,1,1,5,5\na/2.jpg,-1,0,10,10\n", r":2: .*negative"),
        ("localization.txt", "a/1.jpg,1,1,5,x\n", r":1: y1 must be a number"),
        (
            "class_labels.txt",
            "a/1.jpg,0\na/2.jpg,cat\nb/3.jpg,1\n",
            r"class_labels.txt:2: .*integer",
        ),
        ("image_sizes.txt", "a/1.jpg,500\n", r"image_sizes.txt:1: expected `path,w,h`"),
        (
            "image_ids.txt",
            "a/1.jpg\na/2.jpg\na/1.jpg\n",
            r"image_ids.txt:3: .*already appears on line 1",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, name: str, text: str, match: str) -> None:
    files = dict(CUB_FILES)
    files[name] = text
    write_split(tmp_path, files)
    with pytest.raises(MetadataError, match=match) as info:
        read_metadata(tmp_path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)
    assert name in str(info.value)


def test_missing_coverage_is_reported(tmp_path: Path) -> None:
    files = dict(CUB_FILES)
    files["localization.txt"] = "a/1.jpg,60,27,385,331\na/2.jpg,0,0,100,100\n"
    write_split(tmp_path, files)
    with pytest.raises(MetadataError, match=r"no box for 1 image.*'b/3.jpg'"):
        read_metadata(tmp_path)
    files["localization.txt"] = CUB_FILES["localization.txt"] + "zzz.jpg,1,1,2,2\n"
    write_split(tmp_path, files)
    with pytest.raises(MetadataError, match=r"not listed in image_ids.txt.*'zzz.jpg'"):
        read_metadata(tmp_path)


def test_blank_lines_and_crlf_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "image_ids.txt"
    path.write_text("a.jpg\r\n\r\nb.jpg\r\n\n")
    assert read_image_ids(path) == ["a.jpg", "b.jpg"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(MetadataError, match="no image id"):
        read_image_ids(tmp_path / "empty.txt")


def test_rows_keep_their_file_and_line(tmp_path: Path) -> None:
    files = dict(CUB_FILES)
    files["localization.txt"] = "\n" + CUB_FILES["localization.txt"]  # a blank first line
    meta = read_metadata(write_split(tmp_path / "test", files))
    assert meta.lines["image_ids.txt"] == {"a/1.jpg": [1], "a/2.jpg": [2], "b/3.jpg": [3]}
    assert meta.lines["localization.txt"]["b/3.jpg"] == [4, 5]  # one line per box
    assert meta.where("class_labels.txt", "b/3.jpg") == f"{tmp_path / 'test' / 'class_labels.txt'}, line 3"
    origin = meta.origin("localization.txt", every_row=True)
    assert [origin(row) for row in (0, 3)] == [f"{tmp_path / 'test' / 'localization.txt'}, line {n}"
                                               for n in (2, 5)]
    assert meta.origin("image_sizes.txt").lines.tolist() == [1, 2, 3]


def test_left_out_images_have_no_lines_and_masks_keep_theirs(tmp_path: Path) -> None:
    files = dict(CUB_FILES, **{"class_labels.txt": "a/1.jpg,0\na/2.jpg,cat\nb/3.jpg,1\n"})
    problems: list = []
    meta = read_metadata(write_split(tmp_path / "test", files), problems=problems)
    assert meta.image_ids == ["a/1.jpg", "b/3.jpg"] and len(problems) == 1
    assert "a/2.jpg" not in meta.lines["localization.txt"]
    assert meta.origin("class_labels.txt").lines.tolist() == [1, 3]
    masks = {"image_ids.txt": "t/x.jpg\n", "class_labels.txt": "t/x.jpg,3\n",
             "localization.txt": "t/x.jpg,t/m1.png,\nt/x.jpg,t/m2.png,\n"}
    assert read_metadata(write_split(tmp_path / "val", masks)).lines["localization.txt"] == {
        "t/x.jpg": [1, 2]}


def test_a_split_reads_each_file_once(tmp_path: Path, monkeypatch) -> None:
    """The lines that messages name come from the one reading of each file."""
    from camexp.data import metadata

    opened: list[str] = []
    real = metadata.text_lines

    def counting(path, *args):
        opened.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(metadata, "text_lines", counting)
    write_split(tmp_path / "test", CUB_FILES)
    split = metadata.read_metadata_split(tmp_path / "test", "test", tmp_path / "images")
    assert sorted(opened) == sorted(CUB_FILES)
    assert split.box_origin(3) == f"{tmp_path / 'test' / 'localization.txt'}, line 4"
    assert split.label_origin(2) == f"{tmp_path / 'test' / 'class_labels.txt'}, line 3"
