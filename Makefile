# Every target runs from a fresh clone: `make install` first (or let `make test` do it).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: install test test-unit test-engine test-pods e2e crds crds-check chart-lint render bench bench-scale bench-operator demo image images tools cluster-up cluster-down clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(PY)
	$(PIP) install --quiet -e ".[dev]"

# The one test command (README and .ci/run both call it): every tier, real components, the cluster
# tier against every KubeRay of the matrix (tests/conftest.py). Everything
# is built first (the pods tier must not share the CPU with builds); the pods tier runs in a
# pytest of its own, after the others' local Rays and kwok control plane are gone.
test: install tools images
	$(PY) -m pytest tests -m "not pods"
	$(PY) -m pytest tests -m pods

test-unit: install
	$(PY) -m pytest tests/unit

test-engine: install
	$(PY) -m pytest tests/engine

e2e: install tools
	$(PY) -m pytest tests/cluster tests/packaging

# The pods tier alone: one real node, the project's images, real Ray pods (root).
test-pods: install tools images
	$(PY) -m pytest tests -m pods

crds: install
	$(PY) -m geneva_operator.api.crd write
	$(PY) -m geneva_operator.api.reference write

crds-check: install
	$(PY) -m geneva_operator.api.crd check
	$(PY) -m geneva_operator.api.reference check

# Real Kubernetes components (the real node's too, and the kube-apiserver of the oldest Kubernetes
# the chart claims), CoreDNS, every KubeRay of the compatibility matrix (versions.env KUBERAY_VERSIONS),
# kwok, Helm and the GCS emulator built from their Go modules and cached.
tools:
	bash tests/controlplane/build.sh

# A control plane with one real node (root); `make images` then puts the project's images on it.
cluster-up: install tools
	$(PY) -m tests.imagebuild build --only pause
	$(PY) -m tests.controlplane up

cluster-down:
	$(PY) -m tests.controlplane down

HELM_BIN = $(HOME)/.cache/geneva-operator/bin/helm-$(shell sed -n 's/^HELM_VERSION=//p' tests/controlplane/versions.env)/helm

chart-lint: install tools
	$(PY) -m pytest tests/packaging -q

# Plain manifests for clusters without Helm, rendered from the chart (a test checks they are current).
render: tools
	HELM=$(HELM_BIN) deploy/render.sh

demo: install
	$(PY) examples/demo.py

bench: install
	$(PY) -m bench.engine_bench

# growth tables (issue 12): fragments 16/256/1024 at 1M rows, rows 1M/10M/50M at 64 fragments, a skewed table;
# sizes are flags: make bench-scale SCALE_ARGS="--frag-rows 100000 --row-counts 100000,1000000"
bench-scale: install
	$(PY) -m bench.scale_bench $(SCALE_ARGS)

bench-operator: install tools
	$(PY) -m bench.operator_bench

# The images from the Dockerfile without a Docker engine or a registry (buildah, bases from Debian),
# as OCI archives under ~/.cache/geneva-operator/images (tests/imagebuild).
# Imported into `make cluster-up`'s node when one runs.
images: install
	$(PY) -m tests.controlplane images

# No Docker engine on the development machines: this target is for users who have one.
image:
	docker build --target operator -t geneva-operator:dev .
	docker build --target ray-worker -t geneva-ray-worker:dev .

clean:
	rm -rf $(VENV) demo-data .pytest_cache
