# One-command set-up: every target creates the virtual environment it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 5672
DATA_DIR ?= $(HOME)/.local/share/trimq

.PHONY: run test test-rabbitmq lint spec clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/trimq-server --port $(PORT) --data-dir $(DATA_DIR)

test: $(VENV)/.installed
	$(PY) -m pytest -q --durations=20

# The tests whose expectations are RabbitMQ's behaviour, against a private RabbitMQ 3.10 node
# (installed with apt-get if missing): the check that "same as RabbitMQ" still holds.
test-rabbitmq: $(VENV)/.installed
	tools/rabbitmq_reference.sh $(PY) -m pytest -q -m rabbitmq_reference

# ruff check, ruff format --check, mypy --strict, codespell and the spec regeneration check
# (.pre-commit-config.yaml), with the virtual environment's tools first on PATH.
lint: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/pre-commit run --all-files --show-diff-on-failure

spec: $(VENV)/.installed
	$(PY) tools/gen_spec.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
