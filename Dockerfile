# geneva-operator images. Two targets:
#
#   docker build --target operator   -t geneva-operator:dev .
#       The operator: kopf + geneva_operator WITHOUT the `engine` extra. It talks to the Ray
#       dashboard over HTTP (Ray Job REST API) and needs no Ray runtime, so the image stays small
#       and has no Ray/Arrow/LanceDB CVE surface. Non-root (uid 10001), fits a read-only root
#       filesystem (the chart mounts an emptyDir at /tmp).
#
#   docker build --target ray-worker -t geneva-ray-worker:dev .
#       A Ray image with the backfill engine (`engine` extra) for users without their own Ray
#       image: set it as a GenevaBackfill's spec.cluster.image.
#
# Adding the engine to YOUR OWN Ray image (its Ray version must match spec.cluster.rayVersion
# and the `ray` pin of the engine extra, 2.60.0; Python 3.10+):
#
#     FROM your-registry/your-ray:2.60.0-py311
#     COPY --chown=1000:100 pyproject.toml README.md /tmp/geneva-src/
#     COPY --chown=1000:100 operator/ /tmp/geneva-src/operator/
#     RUN pip install --no-cache-dir "/tmp/geneva-src[engine]" && rm -rf /tmp/geneva-src
#
# (or `pip install "geneva-operator[engine]==<version>"` once the package is published). Your UDF
# modules must be importable there too (baked in, or shipped per job via spec.runtimeEnv).
#
# Every base image is pinned to an exact tag (tests/packaging checks: no `latest`, no untagged
# FROM); pin digests too (`name:tag@sha256:...`) in a release pipeline.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
# The direct dependencies at the versions this release is tested with (pyproject.toml has the
# compatible ranges; these make the images reproducible). ENGINE_PINS: the `engine` extra.
ARG OPERATOR_PINS="kopf==1.45.2 kubernetes==33.1.0 pydantic==2.14.3 pydantic-settings==2.16.3 PyYAML==6.0.3 aiohttp==3.14.5 prometheus-client==0.26.0"
ARG ENGINE_PINS="ray[default]==2.60.0 lancedb==0.40.0 pylance==14.0.2 pyarrow==26.0.1 boto3==1.44.8 google-cloud-storage==3.17.1 tqdm==4.70.1 numpy==2.4.6"

# ---------------------------------------------------------------- build: a venv with the operator
FROM ${PYTHON_IMAGE} AS operator-build
ARG OPERATOR_PINS
ENV VENV=/opt/venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first, in their own layer: a code change does not reinstall them.
# No `engine` extra: no ray, lancedb, pyarrow in the operator image.
RUN python -m venv "$VENV" \
 && "$VENV/bin/pip" install --no-cache-dir $OPERATOR_PINS
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# `pip check`: the pins satisfy what pyproject.toml requires.
RUN "$VENV/bin/pip" install --no-cache-dir --no-deps ./ \
 && "$VENV/bin/pip" check \
 && "$VENV/bin/python" -c "import geneva_operator.handlers, kopf" \
 && if "$VENV/bin/python" -c "import ray" 2>/dev/null; then echo "ray must not be in the operator image" >&2; exit 1; fi

# ---------------------------------------------------------------- operator
FROM ${PYTHON_IMAGE} AS operator
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 geneva \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin geneva
COPY --from=operator-build /opt/venv /opt/venv
USER 10001:10001
# 8080: Prometheus metrics; 8081: kopf liveness endpoint (/healthz).
EXPOSE 8080 8081
ENTRYPOINT ["kopf", "run", "--module=geneva_operator.handlers"]
# The Helm chart replaces command and args (namespaces, peering); this default serves everything.
CMD ["--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8081/healthz"]

# ---------------------------------------------------------------- ray-worker
FROM ${RAY_IMAGE} AS ray-worker
# rayproject/ray runs as user `ray` (uid 1000, gid 100) and installs into its own Python env.
ARG OPERATOR_PINS
ARG ENGINE_PINS
# Dependencies first (ray[default]==2.60.0 is already in the base image; pip keeps it), then the
# code with --no-deps: a code change under operator/ rebuilds only the layers from its COPY on.
# The pins are exact (tests/packaging checks them against pyproject.toml); hadolint cannot see
# through the variables.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir $OPERATOR_PINS $ENGINE_PINS
COPY --chown=1000:100 pyproject.toml README.md /tmp/geneva-src/
COPY --chown=1000:100 operator/ /tmp/geneva-src/operator/
# The example UDFs, so examples/backfill.yaml (examples.udfs.text:length, PYTHONPATH /app) runs
# on this image as it is.
COPY --chown=1000:100 examples/udfs/ /app/examples/udfs/
RUN pip install --no-cache-dir --no-deps /tmp/geneva-src \
 && rm -rf /tmp/geneva-src \
 && python -c "import geneva_operator.engine, ray, lancedb; assert ray.__version__ == '2.60.0', ray.__version__"
