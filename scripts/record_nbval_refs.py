"""Record the quick-mode outputs that the test suite compares notebooks against.

Usage: python scripts/record_nbval_refs.py [NOTEBOOK_STEM ...]

Each notebook runs with papermill in quick mode into ``tests/notebooks/``.
``pytest`` (with ``--nbval-lax``) re-executes those copies and fails when a
cell marked ``# NBVAL_CHECK_OUTPUT`` prints something else, so a change in
results shows up as a test failure until it is re-recorded here on purpose.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_ROOT / "tests" / "notebooks"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


def strip_unchecked_outputs(path: Path) -> None:
    """Drop the outputs that nbval does not compare, so the references stay small."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and CHECK_MARKER not in cell.source:
            cell.outputs = []
    nbformat.write(notebook, path)


def main() -> int:
    notebooks = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
    wanted = set(sys.argv[1:])
    if wanted - {n.stem for n in notebooks}:
        print(f"unknown notebooks: {sorted(wanted - {n.stem for n in notebooks})}", file=sys.stderr)
        return 2
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as build:
        os.environ["BOOK_BUILD_DIR"] = build
        for notebook in notebooks:
            if wanted and notebook.stem not in wanted:
                continue
            output = REFERENCE_DIR / notebook.name
            print(f"recording {output.relative_to(REPO_ROOT)}", flush=True)
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters={"quick": True},
                cwd=str(REPO_ROOT),
                progress_bar=False,
                # Leaves out ipykernel's start-up warning about unencrypted loopback TCP.
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
            strip_unchecked_outputs(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
