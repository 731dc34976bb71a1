# The book's two commands are `make book` and `make test`; both create .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD ?= _build
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export BOOK_BUILD_DIR := $(abspath $(BUILD))
export PYTHONHASHSEED := 0

.PHONY: book test check-book browser lab models nbval-refs bench clean help

help:
	@echo "make book        execute every notebook and build the HTML book in $(BUILD)/html"
	@echo "make test        run the whole test suite (unit tests, notebooks, book build, browser check)"
	@echo "make check-book  open every built page in headless Chromium, offline, and check its figures"
	@echo "make lab         start JupyterLab on notebooks/"
	@echo "make models      retrain the embedded checkpoints into data/models (about 15 min)"
	@echo "make nbval-refs  re-record the quick-mode outputs that the tests compare against"
	@echo "make bench       run the benchmarks in benchmarks/"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Debian's Chromium for the offline browser check (root or sudo needed once).
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium package for the browser check"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

book: $(STAMP)
	$(PY) scripts/build_book.py

check-book: $(STAMP) browser
	$(PY) scripts/check_book.py $(BUILD)/html

test: $(STAMP) browser
	$(PY) -m pytest

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# Writes data/models/: the only target that changes shipped data.
models: $(STAMP)
	$(VENV)/bin/papermill notebooks/00_embedded_models.ipynb $(BUILD)/executed/00_embedded_models.train.ipynb \
		-p train True -p output_dir $(CURDIR)/data/models/shapes-clip --cwd $(CURDIR)
	$(VENV)/bin/papermill notebooks/03_fusion_tracing.ipynb $(BUILD)/executed/03_fusion_tracing.train.ipynb \
		-p train True -p output_dir $(CURDIR)/data/models/shapes-blip --cwd $(CURDIR)

nbval-refs: $(STAMP)
	$(PY) scripts/record_nbval_refs.py

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(BUILD)
