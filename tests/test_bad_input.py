"""Bad models, bad data and bad parameters stop with one clear line, or are skipped with a warning.

Each case checks the message printed for the user: one line that names the
value and what to do. Notebook cases run notebooks/04_real_photographs.ipynb
through papermill, as a user would.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import nbformat
import papermill
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from helpers import ModelLoadError, load_clip
from helpers.datasets import check_dataset, load_dataset
from helpers.folders import replace_folder
from helpers.image_folders import CaptionFileError, DatasetError, DatasetWarning
from helpers.params import ParameterError, resolve_device

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "notebooks" / "04_real_photographs.ipynb"
REAL_PHOTOS = REPO_ROOT / "data" / "real_photos"


def run_notebook(tmp_path: Path, **parameters) -> nbformat.NotebookNode:
    return papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters={"quick": True, **parameters},
        cwd=str(REPO_ROOT), progress_bar=False,
    )


def notebook_error(tmp_path: Path, **parameters) -> papermill.PapermillExecutionError:
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        run_notebook(tmp_path, **parameters)
    return caught.value


def stream_text(notebook: nbformat.NotebookNode, name: str) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("name") == name
    )


def assert_one_line(message: str) -> None:
    assert "\n" not in message, message


def write_image(path: Path, colour=(120, 60, 30)) -> None:
    Image.new("RGB", (24, 16), colour).save(path)


def write_captions(folder: Path, rows: list[tuple[str, str]]) -> None:
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("file", "caption"), *rows])


@pytest.fixture
def folder_with_bad_image(tmp_path):
    """Three readable images and one truncated JPEG, all listed in captions.csv."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in (("a.png", (255, 0, 0)), ("b.png", (0, 255, 0)), ("c.png", (0, 0, 255))):
        write_image(folder / name, colour)
    whole = (REAL_PHOTOS / "cat.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(whole[: len(whole) // 2])
    write_captions(folder, [("a.png", "red"), ("broken.jpg", "a cat"), ("b.png", "green"), ("c.png", "blue")])
    return folder


# Models


def test_unknown_hub_id_offline_via_load_clip():
    with pytest.raises(ModelLoadError) as caught:
        load_clip("no-such-owner/no-such-clip")
    message = str(caught.value)
    assert_one_line(message)
    assert "cannot load hub model 'no-such-owner/no-such-clip'" in message
    assert "save_pretrained" in message
    assert "shapes-clip" in message


def test_unknown_hub_id_offline_via_notebook(tmp_path):
    error = notebook_error(tmp_path, model="no-such-owner/no-such-clip")
    assert error.ename == "ModelLoadError"
    assert "cannot load hub model 'no-such-owner/no-such-clip'" in error.evalue


def test_other_architecture_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip"}))
    with pytest.raises(ModelLoadError) as caught:
        load_clip(str(tmp_path))
    assert_one_line(str(caught.value))
    assert "is a 'blip' model; this loader needs a CLIP dual encoder" in str(caught.value)


def test_pickle_checkpoint_rejected(tmp_path, quick_gelu_clip_dir):
    folder = tmp_path / "pickled"
    shutil.copytree(quick_gelu_clip_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as caught:
        load_clip(str(folder))
    assert_one_line(str(caught.value))
    assert "has only pickle weights (pytorch_model.bin)" in str(caught.value)
    assert "Convert the weights to safetensors" in str(caught.value)


# Folders and images


def test_empty_folder_rejected(tmp_path):
    with pytest.raises(DatasetError) as caught:
        load_dataset(str(tmp_path), n=4)
    assert_one_line(str(caught.value))
    assert f"dataset folder {str(tmp_path)!r} is empty" in str(caught.value)
    assert "captions.csv" in str(caught.value)


def test_folder_without_captions_rejected(tmp_path):
    write_image(tmp_path / "a.png")
    with pytest.raises(DatasetError, match=r"has no captions file: expected captions.csv \(columns file,caption\)"):
        load_dataset(str(tmp_path), n=4)


def test_truncated_image_skipped_with_warning(folder_with_bad_image):
    with pytest.warns(DatasetWarning, match=r"skipped unreadable image 'broken.jpg' .*truncated"):
        data = load_dataset(str(folder_with_bad_image), n=4)
    assert data.files == ["a.png", "b.png", "c.png"]
    assert data.captions == ["red", "green", "blue"]
    assert [name for name, _ in data.skipped] == ["broken.jpg"]
    assert "OSError" in data.skipped[0][1]


@pytest.mark.parametrize("content", [b"", b"not an image at all", bytes(range(256)) * 4])
def test_non_image_file_skipped(tmp_path, content):
    write_image(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(content)
    write_captions(tmp_path, [("bad.jpg", "nothing"), ("good.png", "something")])
    with pytest.warns(DatasetWarning, match="skipped unreadable image 'bad.jpg'"):
        data = load_dataset(str(tmp_path), n=2)
    assert data.files == ["good.png"]
    assert len(data.skipped) == 1


def test_unreadable_image_replaced_by_further_draw(tmp_path):
    for i in range(6):
        write_image(tmp_path / f"{i}.png", (i, i, i))
    (tmp_path / "bad.png").write_bytes(b"broken")
    write_captions(tmp_path, [("bad.png", "bad"), *((f"{i}.png", f"image {i}") for i in range(6))])
    drew_bad_image = False
    for seed in range(5):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always", DatasetWarning)
            data = load_dataset(str(tmp_path), n=5, seed=seed)
        assert len(data) == 5
        assert "bad.png" not in data.files
        drew_bad_image |= any("bad.png" in str(w.message) for w in record)
    assert drew_bad_image


def test_all_images_unreadable_rejected(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"broken")
    write_captions(tmp_path, [("bad.png", "bad")])
    with pytest.warns(DatasetWarning):
        with pytest.raises(DatasetError, match=r"none of the 1 image listed in .* could be decoded \(first: 'bad.png'"):
            load_dataset(str(tmp_path), n=1)


def test_many_unreadable_images_rate_limited(tmp_path):
    write_image(tmp_path / "good.png")
    rows = [("good.png", "good")]
    for i in range(8):
        (tmp_path / f"bad{i}.png").write_bytes(b"broken")
        rows.append((f"bad{i}.png", "bad"))
    write_captions(tmp_path, rows)
    with pytest.warns(DatasetWarning) as record:
        data = load_dataset(str(tmp_path), n=9)
    unreadable = [str(w.message) for w in record if "unreadable" in str(w.message)]
    assert len(unreadable) == 6
    assert "skipped 3 more unreadable images" in unreadable[-1]
    assert len(data.skipped) == 8


def test_bad_image_through_notebook_reports_skip(tmp_path, folder_with_bad_image):
    notebook = run_notebook(tmp_path, dataset=str(folder_with_bad_image), n_images=4)
    assert "images: 3, skipped: 1" in stream_text(notebook, "stdout")
    assert "skipped unreadable image 'broken.jpg'" in stream_text(notebook, "stderr")


# Captions files


@pytest.mark.parametrize(
    "text, message",
    [
        ('file,caption\na.png,"a red\nb.png,blue\n', r"is not valid CSV: line 2: unexpected end of data"),
        ('file,caption\na.png,"red" square\n', r"is not valid CSV: line 2: ',' expected after '\"'"),
        ("file,caption\na.png,red\nb.png,blue,extra\n", r"line 3: expected 2 fields \(file,caption\), found 3"),
        ("file,caption\n\n\na.png\n", r"line 4: expected 2 fields \(file,caption\), found 1"),
        ("name,caption\na.png,red\n", r"line 1: the header 'name,caption' has no 'file' column"),
        ("file,caption\na.png,\n", r"line 2: the caption of 'a.png' is empty"),
        ("file,caption\n,red\n", r"line 2: the 'file' field is empty"),
        ("file,caption,file\na.png,red,x\n", r"line 1: repeated column 'file'"),
        ("", r"is empty; expected a header line 'file,caption'"),
        ("file,caption\n", r"has a header but no rows"),
    ],
)
def test_malformed_csv_names_line(tmp_path, text, message):
    write_image(tmp_path / "a.png")
    (tmp_path / "captions.csv").write_text(text)
    with pytest.raises(CaptionFileError, match=message) as caught:
        load_dataset(str(tmp_path), n=1)
    assert_one_line(str(caught.value))
    assert str(tmp_path / "captions.csv") in str(caught.value)


def test_csv_not_utf8_names_line(tmp_path):
    write_image(tmp_path / "a.png")
    (tmp_path / "captions.csv").write_bytes("file,caption\na.png,red\na.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CaptionFileError, match=r"is not UTF-8 text: line 3 has the invalid byte b'\\xe9'"):
        load_dataset(str(tmp_path), n=1)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"images": [\n  {"id": 1, "file_name": "a.png"}\n  {"id": 2}]}', r"is not valid JSON: line 3 column 3: Expecting ',' delimiter"),
        ('{"images": []}', r"is not in COCO captions format: it needs the lists 'images'"),
        ('{"images": [{"id": 1}], "annotations": []}', r"images\[0\] has no 'file_name'"),
        ('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 7, "caption": "x"}]}',
         r"annotations\[0\] has image_id 7, which no entry of 'images' has"),
        ('{"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}], "annotations": []}',
         r"images\[1\] repeats the image id 1"),
        ('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "caption": 5}]}',
         r"annotations\[0\] has caption=5 of the wrong type"),
    ],
)
def test_malformed_coco_json_names_location(tmp_path, text, message):
    write_image(tmp_path / "a.png")
    (tmp_path / "captions.json").write_text(text)
    with pytest.raises(CaptionFileError, match=message) as caught:
        load_dataset(str(tmp_path), n=1)
    assert_one_line(str(caught.value))


def test_missing_images_skipped_with_one_warning(tmp_path):
    write_image(tmp_path / "here.png")
    rows = [("here.png", "present")] + [(f"gone{i}.png", "absent") for i in range(7)]
    write_captions(tmp_path, rows)
    with pytest.warns(DatasetWarning) as record:
        data = load_dataset(str(tmp_path), n=1)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1
    assert "7 of the 8 images listed in" in messages[0]
    assert "are missing under" in messages[0]
    assert "and left out" in messages[0]
    assert "'gone0.png', 'gone1.png', 'gone2.png', 'gone3.png', 'gone4.png' and 2 more" in messages[0]
    assert data.files == ["here.png"]
    assert data.skipped == [(f"gone{i}.png", "missing") for i in range(7)]


def test_all_images_missing_rejected(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    write_image(tmp_path / "elsewhere" / "a.png")
    write_captions(tmp_path, [("a.png", "x"), ("b.png", "y")])
    with pytest.raises(DatasetError) as caught:
        load_dataset(str(tmp_path), n=2)
    message = str(caught.value)
    assert_one_line(message)
    assert "none of the 2 images listed in" in message
    assert "(first missing: 'a.png', 'b.png')" in message
    assert "check that the captions file belongs to this folder" in message


# Parameters and sizes


def test_more_images_than_exist_clipped(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    write_captions(tmp_path, [("a.png", "x"), ("b.png", "y")])
    with pytest.warns(DatasetWarning, match=r"has 2 images with captions, fewer than the 50 requested; using all 2"):
        data = load_dataset(str(tmp_path), n=50)
    assert len(data) == 2


def test_more_digits_than_exist_clipped():
    with pytest.warns(DatasetWarning, match=r"dataset 'digits' has 1797 images, fewer than the 2000 requested; using all 1797"):
        data = load_dataset("digits", n=2000)
    assert len(data) == 1797


def test_more_images_than_exist_via_notebook(tmp_path):
    notebook = run_notebook(tmp_path, n_images=40, quick=False)
    assert "images: 16, skipped: 0" in stream_text(notebook, "stdout")
    assert "has 16 images with captions, fewer than the 40 requested; using all 16" in stream_text(notebook, "stderr")


def test_unknown_dataset_name_rejected():
    with pytest.raises(ParameterError) as caught:
        check_dataset("dataset", "imagenet")
    assert_one_line(str(caught.value))
    assert "parameter dataset='imagenet' is neither a built-in data set ('shapes', 'digits')" in str(caught.value)
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", n=4)


@pytest.mark.parametrize("value", [3, "", None])
def test_dataset_of_wrong_type_rejected(value):
    with pytest.raises(ParameterError, match=rf"parameter dataset={value!r} must be a non-empty string"):
        check_dataset("dataset", value)


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"n_images": 0}, "parameter n_images=0 must be at least 2"),
        ({"n_images": 6000}, "parameter n_images=6000 must be at most 5000"),
        ({"n_images": "many"}, "parameter n_images='many' must be an integer"),
        ({"seed": -1}, "parameter seed=-1 must be at least 0"),
        ({"quick": "yes"}, "parameter quick='yes' must be True or False"),
        ({"dataset": "imagenet"}, "parameter dataset='imagenet' is neither a built-in data set ('shapes', 'digits') nor an existing folder"),
    ],
)
def test_bad_parameter_stops_notebook(tmp_path, parameters, message):
    error = notebook_error(tmp_path, **parameters)
    assert error.ename == "ParameterError"
    assert message in error.evalue


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_stops_notebook(tmp_path):
    with pytest.raises(ParameterError, match="asks for a GPU"):
        resolve_device("cuda")
    error = notebook_error(tmp_path, device="cuda")
    assert error.ename == "ParameterError"
    assert "parameter device='cuda' asks for a GPU, but PyTorch sees none on this machine; use device='cpu'" in error.evalue


# Nothing is lost


def test_notebook_run_writes_nothing_into_repository(tmp_path):
    def digest():
        files = [NOTEBOOK, *(REPO_ROOT / "data").rglob("*")]
        return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files if path.is_file()}

    before = digest()
    run_notebook(tmp_path)
    assert digest() == before


def test_interrupted_folder_write_keeps_old(tmp_path):
    output = tmp_path / "real_photos"
    output.mkdir()
    (output / "keep.txt").write_text("previous set")

    def fail_half_way(folder):
        (folder / "partial.jpg").write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        replace_folder(output, fail_half_way)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real_photos"]
    assert sorted(p.name for p in output.iterdir()) == ["keep.txt"]


def test_folder_write_replaces_old(tmp_path):
    output = tmp_path / "set"
    output.mkdir()
    (output / "old.txt").write_text("previous set")

    def write(folder):
        (folder / "new.txt").write_text("fresh")

    assert replace_folder(output, write) == output.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert (output / "new.txt").read_text() == "fresh"
    assert not (output / "old.txt").exists()
