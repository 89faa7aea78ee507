#!/usr/bin/env bash
# Debian packages the test tiers need. Idempotent: apt runs only when something is missing.
set -euo pipefail
need=()
# openssl: the control plane's PKI fallback; buildah ... libc6-dev: the images (tests/imagebuild);
# containerd ... conntrack: the real node of the pods tier (tests/controlplane/node.py).
for pkg in openssl buildah umoci skopeo debootstrap gcc libc6-dev \
           containerd runc containernetworking-plugins iptables iproute2 conntrack kmod; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v go >/dev/null || { echo "Go is required to build the control plane (tests/controlplane)"; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl is required"; exit 1; }
