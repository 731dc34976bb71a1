"""Notebook contracts: documented, validated parameters and quick runs that change no source."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import nbformat
import papermill
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def parameters_cell(path: Path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    return cells[0]


def assigned_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign):
            names.append(node.target.id)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets]
    return names


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_notebooks_are_numbered():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        assert path.name[:2].isdigit(), path.name
        assert path.name[2] == "_", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_documented(path):
    names = assigned_names(parameters_cell(path).source)
    inspected = papermill.inspect_notebook(str(path))
    # papermill drops lines it cannot parse, so compare against the cell itself.
    assert list(inspected) == names
    for name, spec in inspected.items():
        assert len(spec["help"]) > 10, f"{path.name}: parameter {name} has no comment"
        assert spec["inferred_type_name"] != "None", f"{path.name}: parameter {name} has no type annotation"
    assert "quick" in names
    assert "seed" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_have_no_stored_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"n_heldout": 0}, "n_heldout=0 must be at least 10"),
        ({"seed": "seven"}, "seed='seven' must be an integer"),
        ({"device": "gpu0"}, "device='gpu0' is not a torch device"),
        ({"model": "no/such-model"}, "cannot load hub model 'no/such-model'"),
    ],
)
def test_bad_parameter_stops_with_clear_error(tmp_path, parameters, message):
    notebook = REPO_ROOT / "notebooks" / "00_embedded_models.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(notebook), str(tmp_path / "out.ipynb"), parameters={"quick": True, **parameters},
            cwd=str(REPO_ROOT), progress_bar=False,
        )
    assert message in caught.value.evalue


def test_quick_runs_leave_sources_unchanged(quick_book):
    assert quick_book["sources_before"] == tree_digest(REPO_ROOT / "notebooks")
    assert quick_book["data_before"] == tree_digest(REPO_ROOT / "data")


@pytest.mark.parametrize(
    "parameters, message",
    [
        # Quick mode embeds 200 images, so k is checked against 200, not n_images.
        ({"k": 500, "quick": True}, "parameter k=500 must be at most 158 for 200 image-caption pairs"),
        # The shipped photo folder contains 16 images, fewer than the 50 requested.
        ({"k": 12, "dataset": "data/real_photos", "n_images": 50}, "parameter k=12 must be at most 11 for 16 image-caption pairs"),
    ],
)
def test_alignment_rejects_k_too_large(tmp_path, parameters, message):
    notebook = REPO_ROOT / "notebooks" / "02_embedding_alignment.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(notebook), str(tmp_path / "out.ipynb"), parameters=parameters,
            cwd=str(REPO_ROOT), progress_bar=False,
        )
    assert caught.value.ename == "ParameterError"
    assert message in caught.value.evalue
