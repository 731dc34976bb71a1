"""Bad parameters stop notebook 01 with a message that names them."""

from pathlib import Path

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
