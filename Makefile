# Two entry points for a fresh machine: `make book` (the main job) and `make test`.
PROFILE ?= lab
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline dataset copies beside the repository, when present; otherwise torchvision downloads.
export UEX_DATA_ROOT ?= $(if $(wildcard ../shared/data/cifar10),$(abspath ../shared/data),)

.PHONY: book test test-all setup
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

book: setup
	$(VENV)/bin/uex book --profile $(PROFILE)

# CI's command: everything but the tests marked slow (CI must stay under 30 minutes).
test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q
