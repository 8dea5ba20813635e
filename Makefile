# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
PYENV_ROOT ?= $(HOME)/.pyenv
PORT ?= 8000

# The first Python >= 3.12: on PATH, then under pyenv's versions (newest first).
FIND_PYTHON = for p in python3.14 python3.13 python3.12 python3 \
	  $$(ls -d $(PYENV_ROOT)/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  if "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	    command -v "$$p"; break; fi; done

.PHONY: help run test install install-dev lint bench stop-db clean

help:
	@echo "make run    - install, migrate, create a local admin, serve http://127.0.0.1:$(PORT) + one worker"
	@echo "make test   - install the dev extra and run the whole test suite"
	@echo "make bench  - benchmark table (enqueue, drain, pickup latency, RSS)"
	@echo "make lint   - ruff"

$(VENV)/.python:
	@py="$$($(FIND_PYTHON))"; \
	if [ -z "$$py" ]; then \
	  echo "error: no Python 3.12 or newer found (looked on PATH and in $(PYENV_ROOT)/versions)." >&2; \
	  echo "       Install one (e.g. 'pyenv install 3.12') and run make again." >&2; exit 1; fi; \
	echo "Creating $(VENV) with $$py"; "$$py" -m venv $(VENV) && touch $@

$(VENV)/.installed: $(VENV)/.python pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[server]'
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e '.[server,dev]'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py createlocaladmin --url http://127.0.0.1:$(PORT)
	DEBUG=$${DEBUG:-1} exec $(PY) manage.py devserve --port $(PORT)

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .

bench: install-dev
	$(PY) bench/bench.py $(BENCH_ARGS)

stop-db:
	@$(PY) -c "from pathlib import Path; from taskservice.embedded import stop; \
	print('stopped' if stop(Path('.data')) else 'not running')"

clean:
	rm -rf $(VENV) staticfiles
