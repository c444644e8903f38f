# The Makefile is the interface: every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
SAM_VENV  := .venv-sam
SAM       := $(SAM_VENV)/bin/sam
STAMP     := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help
help:
	@echo "make demo                                   run the whole pipeline locally and print the standings"
	@echo "make test                                   set up and run every test"
	@echo "make invoke FN=<logical id> EVENT=events/<file>.json   invoke one function locally"
	@echo "make lint                                   ruff and mypy"

$(STAMP): pyproject.toml layers/matchstats/requirements.txt
	@py=$$(scripts/find-python) && echo "creating $(VENV) with $$py" && "$$py" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet -e . --group dev
	@touch $@

# aws-sam-cli pins its own boto3, so it lives in a virtualenv of its own.
$(SAM_STAMP):
	@py=$$(scripts/find-python) && "$$py" -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli cfn-lint
	@touch $@

.PHONY: venv sam-venv
venv: $(STAMP)
sam-venv: $(SAM_STAMP)

.PHONY: test
test: $(STAMP) $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 MATCHSTATS_SAM_BIN=$(abspath $(SAM)) MATCHSTATS_CFN_LINT_BIN=$(abspath $(SAM_VENV)/bin/cfn-lint) \
		$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/matchstats/matchstats functions devstack

.PHONY: demo
demo: $(STAMP)
	@echo "make demo is coming with the local stack (issue 4)."

.PHONY: clean
clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
