# The Makefile is the interface: every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
SAM_VENV  := .venv-sam
SAM       := $(SAM_VENV)/bin/sam
STAMP     := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
# The template's Lambda runtime (python3.13): its Python runs `make invoke`'s functions.
RUNTIME       := $(shell sed -n 's/^ *Runtime: *\(python[0-9.]*\).*/\1/p' template.yaml | head -n 1)
RUNTIME_VENV  := .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed-$(RUNTIME)
# The infrastructure scanner that tests/unit/test_template_scanner.py runs over template.yaml.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
PYTEST_ARGS ?=

.PHONY: help
help:
	@echo "make demo                                   run the whole pipeline locally and print the standings"
	@echo "make test                                   set up and run every test"
	@echo "make unit | integration | e2e               one tier (make unit also reports the layer's coverage)"
	@echo "make invoke FN=<logical id> EVENT=events/<file>.json   invoke one function locally"
	@echo "make dev [SEED=none]                        keep the local stack running with a season and the console"
	@echo "make bench [ROWS25M=1]                      measure the pipeline (P1-P9): a table, bench-results/results.json, refresh_cost.png"
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

# checkov gets a virtualenv of its own rather than a place in .venv-sam: it pins boto3
# exactly (3.3.30: boto3==1.35.49) and so does aws-sam-cli (1.170: boto3==1.43.108), so in
# one virtualenv pip would hold aws-sam-cli and cfn-lint back to releases that agree with
# checkov's boto3. The stamp names the version, so a new pin rebuilds the venv.
$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	@py=$$(scripts/find-python) && "$$py" -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet "checkov==$(CHECKOV_VERSION)"
	@touch $@

# Exactly the runtime's Python, holding only the Lambda runtime interface client: the
# function's own dependencies come from the built layer, as in Lambda. `sam build` also
# finds its python3.13 here. The stamp names the runtime, so a new one rebuilds the venv.
$(RUNTIME_STAMP):
	rm -rf $(RUNTIME_VENV)
	@py=$$(scripts/runtime-python) && echo "creating $(RUNTIME_VENV) with $$py" && "$$py" -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/pip install --quiet "awslambdaric>=3"
	@touch $@

.PHONY: venv sam-venv checkov-venv runtime-venv
venv: $(STAMP)
sam-venv: $(SAM_STAMP)
checkov-venv: $(CHECKOV_STAMP)
runtime-venv: $(RUNTIME_STAMP)

# The linters and the scanner that the unit tier runs over template.yaml, from their venvs.
TEST_ENV := SAM_CLI_TELEMETRY=0 MATCHSTATS_SAM_BIN=$(abspath $(SAM)) \
	MATCHSTATS_CFN_LINT_BIN=$(abspath $(SAM_VENV)/bin/cfn-lint) \
	MATCHSTATS_CHECKOV_BIN=$(abspath $(CHECKOV_VENV)/bin/checkov)

# Every tier; .ci/run calls this.
.PHONY: test
test: $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP) $(RUNTIME_STAMP)
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

# tests/unit (no network), then the branch coverage of the layer's logic modules
# (matchstats/*.py; the data access in db/ is the integration tier's) by this tier alone.
.PHONY: unit
unit: $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP)
	$(TEST_ENV) $(PY) -m pytest tests/unit --cov --cov-report=term-missing $(PYTEST_ARGS)

# tests/integration: the real PostgreSQL (embedded, from a wheel) and moto's SQS.
.PHONY: integration
integration: $(STAMP)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# tests/e2e: the whole pipeline through the local stack, make invoke, make dev, the demo.
.PHONY: e2e
e2e: $(STAMP) $(SAM_STAMP) $(RUNTIME_STAMP)
	$(TEST_ENV) $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# sam build, then the function under the Lambda Runtime Interface Emulator, no Docker.
# It talks to the running `make dev` stack (its .devstack/dev.env), else to what env.json
# points at; ENV_VARS=<file> overrides either. It starts no services itself.
.PHONY: invoke
invoke: $(STAMP) $(SAM_STAMP) $(RUNTIME_STAMP)
	@SAM_CLI_TELEMETRY=0 $(PY) -m devstack.invoke --function "$(FN)" --event "$(EVENT)" \
		$(if $(ENV_VARS),--env-vars "$(ENV_VARS)") $(INVOKE_ARGS)

# The API's OpenAPI document is generated from the code; a unit test keeps it current.
.PHONY: openapi
openapi: $(STAMP)
	PYTHONPATH=functions $(PY) -m devstack.openapi openapi.json

.PHONY: lint
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/matchstats/matchstats functions devstack ops testkit bench

# The figures of README's Benchmarks section; BENCH_ARGS="--size tiny" for a quick run,
# ROWS25M=1 to measure P7 at 25M match_points rows as well (about 18 minutes more).
.PHONY: bench
bench: $(STAMP)
	PYTHONPATH=layers/matchstats:functions $(PY) -m bench $(if $(ROWS25M),--rows-25m) $(BENCH_ARGS)

# exec: the command replaces the shell, so that it is make's own child and ends with make
# (devstack.processes.die_with_parent) when make is killed outright.
.PHONY: demo
demo: $(STAMP)
	exec $(PY) -m devstack.demo

# SEED=none starts with an empty database instead of the small season; DEV_ARGS passes
# more options to devstack.dev (--log-dir DIR, as the tests do).
.PHONY: dev
dev: $(STAMP)
	exec $(PY) -m devstack.dev --seed "$(or $(SEED),season)" $(DEV_ARGS)

.PHONY: clean
clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(RUNTIME_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage
