# Every target runs from a fresh clone: `make install` first (or let `make test` do it).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: install test test-unit test-engine e2e crds crds-check chart-lint bench bench-operator demo image tools cluster-up cluster-down clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(PY)
	$(PIP) install --quiet -e ".[dev]"

# The one test command (README and .ci/run both call it): every tier, real components.
test: install tools
	$(PY) -m pytest tests

test-unit: install
	$(PY) -m pytest tests/unit

test-engine: install
	$(PY) -m pytest tests/engine

e2e: install tools
	$(PY) -m pytest tests/cluster tests/packaging

crds: install
	$(PY) -m geneva_operator.api.crd write
	$(PY) -m geneva_operator.api.reference write

crds-check: install
	$(PY) -m geneva_operator.api.crd check
	$(PY) -m geneva_operator.api.reference check

# Real Kubernetes components, KubeRay, kwok and Helm built from their Go modules and cached.
tools:
	bash tests/controlplane/build.sh

cluster-up: install tools
	$(PY) -m tests.controlplane up

cluster-down:
	$(PY) -m tests.controlplane down

chart-lint: tools
	$(PY) -m pytest tests/packaging -q

demo: install
	$(PY) examples/demo.py

bench: install
	$(PY) -m bench.engine_bench

# No Docker engine on the development machines: this target is for users who have one.
image:
	docker build --target operator -t geneva-operator:dev .
	docker build --target ray-worker -t geneva-ray-worker:dev .

clean:
	rm -rf $(VENV) demo-data .pytest_cache
