"""The book builds from quick-mode notebook runs, and its pages draw offline in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_book_builds(quick_book):
    assert quick_book["returncode"] == 0, quick_book["output"][-5000:]
    html = quick_book["build"] / "html"
    assert (html / "index.html").is_file()
    for notebook in NOTEBOOKS:
        assert (html / "notebooks" / f"{notebook.stem}.html").is_file(), notebook.name


def test_every_notebook_executed(quick_book):
    records = json.loads((quick_book["build"] / "run_record.json").read_text())
    assert [r["notebook"] for r in records] == [n.name for n in NOTEBOOKS]
    assert all(r["status"] == "ok" for r in records), records
    assert all(r["parameters"] == {"quick": True} for r in records)


def test_generated_pages_list_parameters_and_versions(quick_book):
    html = quick_book["build"] / "html" / "book"
    parameters = (html / "parameters.html").read_text()
    assert "n_heldout" in parameters
    reproducibility = (html / "reproducibility.html").read_text()
    assert "transformers" in reproducibility
    assert "00_embedded_models.ipynb" in reproducibility


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make test installs it)")
def test_pages_draw_offline_in_chromium(quick_book):
    assert quick_book["returncode"] == 0, quick_book["output"][-5000:]
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "check_book.py"), str(quick_book["build"] / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 pages with problems" in result.stdout


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make test installs it)")
def test_check_book_follows_redirects_on_disk(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text("<html><body><p>intro</p></body></html>")
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    (tmp_path / "old.html").write_text('<meta http-equiv="Refresh" content="0; url=book/gone.html" />')
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "check_book.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ok   index.html: redirects to book/intro.html" in result.stdout
    assert "FAIL old.html: redirects to book/gone.html" in result.stdout
    assert "1 pages with problems" in result.stdout
