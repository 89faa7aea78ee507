# A stand-in for rayproject/ray:2.60.0-py311, built on the local python base: user `ray`
# (uid 1000, gid 100 `users`, HOME /home/ray), a Python env writable by that user first on PATH
# (`python`, `pip`), ray[default] (dashboard included), bash and wget (KubeRay's probes run wget).
# KubeRay starts Ray with `bash -lc`: Debian's /etc/profile resets PATH for a login shell, so
# /etc/profile.d puts the env back in front (Ubuntu-based rayproject/ray keeps the ENV PATH).
ARG PYTHON_BASE
FROM ${PYTHON_BASE}
ARG RAY_VERSION
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && useradd --uid 1000 --gid 100 --create-home --home-dir /home/ray --shell /bin/bash ray \
 && printf '%s\n' 'PATH="/home/ray/venv/bin:$PATH"' 'export PATH' > /etc/profile.d/ray-venv.sh
USER 1000:100
ENV HOME=/home/ray \
    PATH=/home/ray/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /home/ray
RUN python3 -m venv /home/ray/venv \
 && pip install --no-cache-dir --disable-pip-version-check "ray[default]==${RAY_VERSION}" \
 && python -c "import ray, ray.dashboard; assert ray.__version__ == '${RAY_VERSION}'"
CMD ["bash"]
