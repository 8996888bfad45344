# One-command set-up: every target creates the virtual environment it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 5672
DATA_DIR ?= $(HOME)/.local/share/trimq

.PHONY: run test lint spec clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/trimq-server --port $(PORT) --data-dir $(DATA_DIR)

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(wildcard trimq storage tools tests bench examples)
	$(VENV)/bin/mypy

spec: $(VENV)/.installed
	$(PY) tools/gen_spec.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
