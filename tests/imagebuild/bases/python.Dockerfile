# A stand-in for python:3.11-slim-bookworm, built from Debian without a registry: bookworm's own
# CPython 3.11 (debootstrap --variant=minbase, + python3-venv, ca-certificates) with `python` on PATH.
# rootfs.tar is made by tests/imagebuild (debootstrap); apt lists and .debs are removed. pip.conf
# points pip at the system CA bundle (which builds replace, for RUN only, by the host's).
FROM scratch
ADD rootfs.tar /
COPY pip.conf /etc/pip.conf
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
