"""The image-folder loader: CSV and COCO captions, image modes, sampling, and the shipped real photos."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import papermill
import pytest
from PIL import Image

from helpers import encoding, load_clip
from helpers.datasets import load_dataset
from helpers.image_folders import DatasetError, DatasetWarning, load_image_folder, read_rgb

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_PHOTOS = REPO_ROOT / "data" / "real_photos"


def write_image(path: Path, size=(20, 12), colour=(200, 40, 40), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def coco_document(files: list[str], captions: list[tuple[int, str]]) -> dict:
    return {
        "images": [{"id": 100 + i, "file_name": name, "width": 20, "height": 12} for i, name in enumerate(files)],
        "annotations": [{"id": j, "image_id": 100 + i, "caption": text} for j, (i, text) in enumerate(captions)],
    }


@pytest.fixture
def csv_folder(tmp_path):
    folder = tmp_path / "photos"
    write_image(folder / "a.png", size=(20, 12), colour=(255, 0, 0))
    write_image(folder / "b.jpg", size=(31, 17), colour=(0, 0, 255))
    write_image(folder / "sub" / "c.png", size=(8, 8), colour=128, mode="L")
    write_csv(folder / "captions.csv", [
        ["file", "caption", "subject"],
        ["a.png", "a red picture", "colour"],
        ["b.jpg", "a blue picture", ""],
        ["sub/c.png", "a grey picture", "grey"],
    ])
    return folder


def test_csv_folder_loads_in_file_order(csv_folder):
    data = load_dataset(str(csv_folder), n=3)
    assert data.files == ["a.png", "b.jpg", "sub/c.png"]
    assert data.captions == ["a red picture", "a blue picture", "a grey picture"]
    assert data.skipped == []
    assert data.masks is None


def test_csv_images_keep_their_size_as_rgb(csv_folder):
    data = load_dataset(str(csv_folder), n=3)
    assert [image.shape for image in data.images] == [(12, 20, 3), (17, 31, 3), (8, 8, 3)]
    assert all(image.dtype == np.uint8 for image in data.images)
    assert tuple(data.images[0][0, 0]) == (255, 0, 0)
    assert tuple(data.images[2][0, 0]) == (128, 128, 128)


def test_csv_label_columns_become_labels(csv_folder):
    data = load_dataset(str(csv_folder), n=3)
    assert data.label_names == {"subject": ("colour", "grey")}
    assert data.labels["subject"].tolist() == [0, -1, 1]


def test_csv_path_as_spec(csv_folder):
    data = load_dataset(str(csv_folder / "captions.csv"), n=3)
    assert data.files == ["a.png", "b.jpg", "sub/c.png"]


def test_repeated_csv_file_keeps_first_caption(tmp_path):
    write_image(tmp_path / "a.png")
    write_csv(tmp_path / "captions.csv", [["file", "caption"], ["a.png", "first"], ["a.png", "second"]])
    data = load_dataset(str(tmp_path), n=1)
    assert data.captions == ["first"]


def test_csv_header_case_insensitive(tmp_path):
    write_image(tmp_path / "a.png")
    (tmp_path / "captions.csv").write_text("File,Caption\na.png,a picture\n")
    assert load_dataset(str(tmp_path), n=1).captions == ["a picture"]


def test_csv_blank_lines_ignored(tmp_path):
    write_image(tmp_path / "a.png")
    (tmp_path / "captions.csv").write_text("file,caption\n\na.png,a picture\n\n")
    assert load_dataset(str(tmp_path), n=1).captions == ["a picture"]


def test_quoted_csv_caption_with_comma(tmp_path):
    write_image(tmp_path / "a.png")
    (tmp_path / "captions.csv").write_text('file,caption\na.png,"a cat, asleep"\n')
    assert load_dataset(str(tmp_path), n=1).captions == ["a cat, asleep"]


def test_coco_inside_folder_takes_first_caption(tmp_path):
    folder = tmp_path / "val"
    for name in ("x.jpg", "y.jpg"):
        write_image(folder / name)
    document = coco_document(["x.jpg", "y.jpg"], [(1, " first of y \n"), (0, "first of x"), (0, "second of x"), (1, "second of y")])
    (folder / "captions_val.json").write_text(json.dumps(document))
    data = load_dataset(str(folder), n=2)
    assert data.files == ["x.jpg", "y.jpg"]
    assert data.captions == ["first of x", "first of y"]
    assert data.labels == {}


@pytest.mark.parametrize("where", ["parent", "annotations"])
def test_coco_json_beside_folder(tmp_path, where):
    folder = tmp_path / "coco" / "val2017"
    write_image(folder / "000001.jpg")
    json_folder = tmp_path / "coco" if where == "parent" else tmp_path / "coco" / "annotations"
    json_folder.mkdir(parents=True, exist_ok=True)
    (json_folder / "captions_val2017.json").write_text(json.dumps(coco_document(["000001.jpg"], [(0, "a photo")])))
    (json_folder / "captions_train2017.json").write_text(json.dumps(coco_document(["other.jpg"], [(0, "other")])))
    data = load_dataset(str(folder), n=1)
    assert data.captions == ["a photo"]


def test_coco_json_path_finds_split_folder(tmp_path):
    write_image(tmp_path / "coco" / "val2017" / "000001.jpg")
    annotations = tmp_path / "coco" / "annotations"
    annotations.mkdir()
    path = annotations / "captions_val2017.json"
    path.write_text(json.dumps(coco_document(["000001.jpg"], [(0, "a photo")])))
    data = load_dataset(str(path), n=1)
    assert data.files == ["000001.jpg"]


def test_coco_image_without_caption_warned(tmp_path):
    for name in ("x.jpg", "y.jpg"):
        write_image(tmp_path / name)
    (tmp_path / "captions.json").write_text(json.dumps(coco_document(["x.jpg", "y.jpg"], [(0, "only x")])))
    with pytest.warns(DatasetWarning, match=r"1 image in .* without a caption left out: 'y.jpg'"):
        data = load_dataset(str(tmp_path), n=1)
    assert data.files == ["x.jpg"]


def test_draw_is_seeded_and_in_file_order(tmp_path):
    rows = [["file", "caption"]]
    for i in range(12):
        write_image(tmp_path / f"{i:02d}.png", colour=(i, i, i))
        rows.append([f"{i:02d}.png", f"picture {i}"])
    write_csv(tmp_path / "captions.csv", rows)
    first = load_image_folder(tmp_path, n=4, seed=3)
    again = load_image_folder(tmp_path, n=4, seed=3)
    other = load_image_folder(tmp_path, n=4, seed=4)
    assert first.files == again.files
    assert first.files == sorted(first.files)
    assert len(first.files) == 4
    assert first.files != other.files
    assert first.n_available == 12


def test_several_caption_files_rejected(tmp_path):
    write_image(tmp_path / "a.png")
    write_csv(tmp_path / "captions.csv", [["file", "caption"], ["a.png", "x"]])
    (tmp_path / "captions_extra.json").write_text(json.dumps(coco_document(["a.png"], [(0, "y")])))
    with pytest.raises(DatasetError, match="several captions files .*captions.csv, captions_extra.json.*pass the path"):
        load_dataset(str(tmp_path), n=1)


def test_relative_path_found_from_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = load_dataset("data/real_photos", n=2, seed=0)
    assert len(data) == 2


@pytest.mark.parametrize(
    "mode, colour, expected",
    [
        ("L", 90, (90, 90, 90)),
        ("1", 1, (255, 255, 255)),
        ("LA", (90, 0), (255, 255, 255)),
        ("RGBA", (10, 20, 30, 0), (255, 255, 255)),
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("P", 0, (0, 0, 0)),
    ],
)
def test_png_modes_become_rgb(tmp_path, mode, colour, expected):
    path = write_image(tmp_path / "image.png", size=(5, 4), colour=colour, mode=mode)
    pixels = read_rgb(path)
    assert pixels.shape == (4, 5, 3)
    assert pixels.dtype == np.uint8
    assert tuple(pixels[0, 0]) == expected


def test_palette_transparency_becomes_white(tmp_path):
    image = Image.new("P", (5, 4), 3)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 3
    image.save(tmp_path / "image.png", transparency=3)
    assert tuple(read_rgb(tmp_path / "image.png")[0, 0]) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = write_image(tmp_path / "image.jpg", size=(6, 6), colour=(0, 0, 0, 0), mode="CMYK")
    assert Image.open(path).mode == "CMYK"
    pixels = read_rgb(path)
    assert pixels.shape == (6, 6, 3)
    assert pixels.min() >= 250


def test_sixteen_bit_greyscale_scaled(tmp_path):
    Image.fromarray(np.full((3, 4), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.full((3, 4), 257 * 100, dtype=np.uint16)).save(tmp_path / "mid.png")
    assert tuple(read_rgb(tmp_path / "deep.png")[0, 0]) == (255, 255, 255)
    assert tuple(read_rgb(tmp_path / "mid.png")[0, 0]) == (100, 100, 100)


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (8, 4), (255, 0, 0)).save(tmp_path / "turned.jpg", exif=exif)
    assert read_rgb(tmp_path / "turned.jpg").shape == (8, 4, 3)


def test_folder_images_feed_the_image_processor(csv_folder):
    loaded = load_clip("shapes-clip")
    data = load_dataset(str(csv_folder), n=3)
    pixels = encoding.pixel_values(loaded, list(data.images))
    assert tuple(pixels.shape) == (3, 3, loaded.image_size, loaded.image_size)


def test_built_in_datasets_unchanged():
    shapes = load_dataset("shapes", n=5, seed=1)
    digits = load_dataset("digits", n=5, seed=1)
    assert len(shapes) == 5
    assert shapes.masks is not None
    assert shapes.files == []
    assert len(digits) == 5
    assert digits.label_names["digit"][7] == "seven"


def test_shipped_real_photos_load():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset(str(REAL_PHOTOS), n=16)
    assert len(data) == 16
    assert data.skipped == []
    assert set(data.label_names) == {"subject", "colour"}
    assert data.label_names["colour"] == ("colour", "greyscale")
    greyscale = [bool((image == image[..., :1]).all()) for image in data.images]
    assert sum(greyscale) == int((data.labels["colour"] == 1).sum()) == 7
    assert all(max(image.shape[:2]) <= 512 for image in data.images)


def test_shipped_real_photos_small_and_attributed():
    files = [p for p in REAL_PHOTOS.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 3_000_000
    sources = (REAL_PHOTOS / "SOURCES.md").read_text()
    for image in (p for p in files if p.suffix in (".jpg", ".png")):
        assert f"`{image.name}`" in sources


def test_real_photos_script_reproduces_shipped_files(tmp_path):
    output = tmp_path / "real_photos"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "make_real_photos.py"), str(output)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    created = sorted(p.name for p in output.iterdir())
    assert created == sorted(p.name for p in REAL_PHOTOS.iterdir())
    for name in created:
        assert (output / name).read_bytes() == (REAL_PHOTOS / name).read_bytes(), name


def test_notebook_runs_on_coco_layout_with_local_checkpoint(tmp_path, quick_gelu_clip_dir):
    coco = tmp_path / "coco"
    (coco / "val2017").mkdir(parents=True)
    (coco / "annotations").mkdir()
    with open(REAL_PHOTOS / "captions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:6]
    files = [f"{i:012d}.jpg" for i in range(len(rows))]
    for name, row in zip(files, rows):
        Image.open(REAL_PHOTOS / row["file"]).convert("RGB").save(coco / "val2017" / name)
    captions = [(i, row["caption"]) for i, row in enumerate(rows)] + [(i, "another caption") for i in range(len(rows))]
    (coco / "annotations" / "captions_val2017.json").write_text(json.dumps(coco_document(files, captions)))

    notebook = papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "04_real_photographs.ipynb"), str(tmp_path / "out.ipynb"),
        parameters={"model": str(quick_gelu_clip_dir), "dataset": str(coco / "val2017"), "n_images": 4, "seed": 1, "quick": True},
        cwd=str(REPO_ROOT), progress_bar=False,
    )
    stdout = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
        if output.get("name") == "stdout"
    )
    assert "input size 224 px" in stdout
    assert "images: 4, skipped: 0" in stdout
    assert "chance top-1: 0.250" in stdout
