"""Notebook 01 runs on a local quick_gelu checkpoint, and bad parameters stop it with a message that names them."""

from pathlib import Path

import nbformat
import papermill
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "notebooks" / "01_attention_probing.ipynb"


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"n_images": 5}, "n_images=5 must be at least 40"),
        ({"dataset": "nope"}, "parameter dataset='nope' is neither a built-in data set"),
    ],
)
def test_bad_parameter_stops_notebook(tmp_path, parameters, message):
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters={"quick": True, **parameters},
            cwd=str(REPO_ROOT), progress_bar=False,
        )
    assert caught.value.ename == "ParameterError"
    assert message in caught.value.evalue


def test_notebook_runs_on_quick_gelu_checkpoint(tmp_path, quick_gelu_clip_dir):
    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(output), parameters={"quick": True, "model": str(quick_gelu_clip_dir)},
        cwd=str(REPO_ROOT), progress_bar=False,
    )
    notebook = nbformat.read(output, as_version=4)
    printed = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    # The ablation printout and the summary table are the last results of the notebook.
    assert "baseline image->text top-1:" in printed
    assert "best localising head" in notebook.cells[-1].outputs[0]["data"]["text/markdown"]
