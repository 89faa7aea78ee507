"""Names, labels and URLs of the Ray clusters the operator creates."""
from __future__ import annotations

import hashlib
import re

from ..settings import DEFAULT_DASHBOARD_URL_TEMPLATE, check_dashboard_url_template

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "geneva-operator"
BACKFILL_LABEL = "geneva.lancedb.com/backfill"
SPEC_HASH_ANNOTATION = "geneva.lancedb.com/spec-hash"

# KubeRay rejects longer RayCluster names (MaxRayClusterNameLength: "-serve-svc" must still fit
# in 63) and names that are not DNS-1035 labels. It truncates pod name prefixes to 50 itself, so
# `<cluster>-head-svc` (<= 62) is the longest name we have to keep valid.
MAX_RAY_CLUSTER_NAME = 53
_SUFFIX = "-ray"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def ray_cluster_name(backfill_name: str) -> str:
    """`<name>-ray`, or, when that is too long or not a DNS-1035 label (backfill names may hold
    dots or start with a digit), a shortened form made unique by a hash of the full name."""
    plain = backfill_name + _SUFFIX
    if len(plain) <= MAX_RAY_CLUSTER_NAME and _DNS1035.match(plain):
        return plain
    base = re.sub(r"[^a-z0-9-]", "-", backfill_name.lower())
    if not base[:1].isalpha():
        base = "gbf-" + base
    hashed = f"-{_digest(backfill_name)}{_SUFFIX}"
    base = base[: MAX_RAY_CLUSTER_NAME - len(hashed)].rstrip("-")
    return base + hashed


def label_value(text: str) -> str:
    """A valid label value (<= 63, alphanumeric at both ends) standing for `text`."""
    if len(text) <= 63:
        return text
    return f"{text[:54].rstrip('-._')}-{_digest(text)}"


def dashboard_url(template: str = DEFAULT_DASHBOARD_URL_TEMPLATE, *, cluster_name: str, namespace: str) -> str:
    """The Ray dashboard (and Job API) base URL of a cluster, from the operator's URL template."""
    return check_dashboard_url_template(template).format(cluster=cluster_name, namespace=namespace)
