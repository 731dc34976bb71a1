"""Execute every notebook with papermill and build the HTML book from the executed copies.

Usage: python scripts/build_book.py [--quick] [--only 00_embedded_models ...]

Steps:
1. Execute ``notebooks/*.ipynb`` with papermill into ``<build>/executed/``;
   the source notebooks are never written.
2. Stage a book source tree in ``<build>/book-src``: the top-level
   ``_config.yml``, ``_toc.yml``, ``references.bib``, ``book/`` pages, the
   executed notebooks, generated pages (parameters, reproducibility) and
   plotly.js in ``_static/`` so figures draw without network access.
3. Run ``jupyter-book build`` with warnings as errors; the HTML lands in
   ``<build>/html``.

``<build>`` is ``_build`` unless ``$BOOK_BUILD_DIR`` names another folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import papermill
import plotly

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.paths import REPO_ROOT, build_dir  # noqa: E402
from helpers.reproducibility import machine_summary, package_versions  # noqa: E402

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")


def notebook_parameters(path: Path) -> dict[str, dict]:
    """Return papermill's view of a notebook's parameters cell (name -> default, type, help)."""
    return papermill.inspect_notebook(str(path))


def execute(notebook: Path, output: Path, parameters: dict) -> dict:
    """Execute one notebook with papermill and return its run record."""
    start = time.perf_counter()
    status = "ok"
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            cwd=str(REPO_ROOT),
            progress_bar=False,
            kernel_name="python3",
            # ipykernel warns at start-up that its loopback TCP channels are not
            # encrypted; errors from the kernel process still reach the log.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except papermill.PapermillExecutionError as error:
        status = f"failed: {error.ename}: {error.evalue}"
    return {
        "notebook": notebook.name,
        "parameters": parameters,
        "defaults": {name: spec["default"] for name, spec in notebook_parameters(notebook).items()},
        "seconds": round(time.perf_counter() - start, 1),
        "status": status,
    }


def parameters_page(notebooks: list[Path]) -> str:
    lines = [
        "# Notebook parameters",
        "",
        "Every notebook reads its settings from a cell tagged `parameters`. Override any of them "
        "with papermill (`-p NAME VALUE`); `papermill --help-notebook notebooks/NAME.ipynb` prints "
        "the same list. Each notebook checks its values and stops with a message naming the "
        "parameter when one is invalid.",
        "",
    ]
    for notebook in notebooks:
        lines += [f"## `{notebook.name}`", "", "| parameter | default | meaning and allowed values |", "|---|---|---|"]
        for name, spec in notebook_parameters(notebook).items():
            help_text = spec["help"].replace("|", "\\|")
            lines.append(f"| `{name}` | `{spec['default']}` | {help_text} |")
        lines.append("")
    return "\n".join(lines)


def reproducibility_tables(records: list[dict], quick: bool, total_seconds: float) -> str:
    versions = package_versions()
    machine = machine_summary()
    lines = [
        "## Software",
        "",
        "| package | version |",
        "|---|---|",
        *(f"| {name} | {version} |" for name, version in versions.items()),
        "",
        "## Machine",
        "",
        "| property | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine.items()),
        "",
        "## Execution",
        "",
        f"Mode: {'quick (test build)' if quick else 'full'}. Total execution time: {total_seconds:.0f} s.",
        "",
        "| notebook | seconds | status | seed | parameters overridden |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        seed = record["parameters"].get("seed", record["defaults"].get("seed", "n/a"))
        overridden = ", ".join(f"`{k}={v!r}`" for k, v in record["parameters"].items()) or "none"
        lines.append(f"| {record['notebook']} | {record['seconds']} | {record['status']} | {seed} | {overridden} |")
    return "\n".join(lines) + "\n"


def stage(source: Path, executed: Path, records: list[dict], quick: bool, total_seconds: float) -> None:
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "book", source / "book")
    shutil.copytree(executed, source / "notebooks")
    generated = source / "book" / "generated"
    generated.mkdir()
    notebooks = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    (generated / "parameters.md").write_text(parameters_page(notebooks))
    (generated / "reproducibility_tables.md").write_text(reproducibility_tables(records, quick, total_seconds))
    static = source / "_static"
    static.mkdir()
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="execute notebooks with quick=True (test build)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook stems to execute (default: all)")
    args = parser.parse_args()

    out = build_dir()
    executed = out / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.only:
        unknown = set(args.only) - {n.stem for n in notebooks}
        if unknown:
            print(f"unknown notebooks: {sorted(unknown)}; available: {[n.stem for n in notebooks]}", file=sys.stderr)
            return 2
        notebooks = [n for n in notebooks if n.stem in args.only]

    records, start = [], time.perf_counter()
    for notebook in notebooks:
        parameters = {"quick": True} if args.quick else {}
        print(f"executing {notebook.name} ...", flush=True)
        record = execute(notebook, executed / notebook.name, parameters)
        print(f"  {record['status']} in {record['seconds']} s", flush=True)
        records.append(record)
    total = time.perf_counter() - start
    (out / "run_record.json").write_text(json.dumps(records, indent=1))
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        for record in failed:
            print(f"{record['notebook']} {record['status']} (see {executed / record['notebook']})", file=sys.stderr)
        return 1

    source = out / "book-src"
    stage(source, executed, records, args.quick, total)
    jb_out = out / "jb"
    command = ["jupyter-book", "build", str(source), "--path-output", str(jb_out), "-W", "-n", "--keep-going"]
    print(" ".join(command), flush=True)
    build_start = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / command[0]), *command[1:]])
    if result.returncode != 0:
        return result.returncode
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(jb_out / "_build" / "html"), html)
    print(f"notebooks executed in {total:.0f} s, HTML built in {time.perf_counter() - build_start:.0f} s: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
