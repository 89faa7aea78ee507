"""The GenevaBackfill manifests the API server must admit or refuse, with what it says when it
refuses: one list for every API server they are run on (the offline check of the current
Kubernetes, test_crd_apiserver.py, and the real kube-apiserver of the oldest one the chart
claims, tests/packaging/test_oldest_kubernetes.py)."""
from __future__ import annotations

import copy

BASE = {
    "table": {"uri": "s3://bucket/db", "name": "captions", "storageOptions": {"region": "us-east-1"}},
    "column": "caption_len",
    "udf": {"function": "my_udfs.text:length", "inputColumns": ["caption"], "outputType": "int32"},
    "cluster": {},
}


def present(spec: dict) -> dict:
    """A case's spec as sent: None marks a field the case leaves out."""
    return {k: v for k, v in spec.items() if v is not None}


def manifest(spec: dict) -> dict:
    return {"apiVersion": "geneva.lancedb.com/v1alpha1", "kind": "GenevaBackfill", "metadata": {"name": "b", "namespace": "n"}, "spec": spec}


def with_(path: str, value) -> dict:
    """BASE with the dotted path set (None deletes it)."""
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return spec


GPU_UDF = {**BASE["udf"], "resources": {"gpu": 1}}

# (name, spec, old spec or None, expected error fragment or None)
CASES = [
    ("minimal", BASE, None, None),
    ("both clusters", with_("existingCluster", {"name": "shared"}), None, "exactly one of cluster and existingCluster"),
    ("no cluster", with_("cluster", None), None, "exactly one of cluster and existingCluster"),
    ("existing cluster", {**with_("cluster", None), "existingCluster": {"name": "shared"}}, None, None),
    ("min above replicas", with_("cluster.workerGroups", [{"name": "w", "replicas": 1, "minReplicas": 2, "maxReplicas": 3}]), None,
     "spec.cluster.workerGroups[0].minReplicas: Invalid value: \"object\": minReplicas must not exceed replicas"),
    ("replicas above max", with_("cluster.workerGroups", [{"name": "w", "replicas": 4, "maxReplicas": 3}]), None,
     "spec.cluster.workerGroups[0].replicas: Invalid value: \"object\": replicas must not exceed maxReplicas"),
    ("defaults within bounds", with_("cluster.workerGroups", [{"name": "w"}]), None, None),
    ("gpu group without gpus", with_("cluster.workerGroups", [{"name": "g", "type": "gpu"}]), None,
     "spec.cluster.workerGroups[0].gpu: Invalid value: \"object\": gpu must be > 0 when type is gpu"),
    ("cpu group with gpus", with_("cluster.workerGroups", [{"name": "c", "gpu": 1}]), None, "gpu must be > 0 when type is gpu"),
    ("gpu udf without gpu group", with_("udf", GPU_UDF), None,
     "spec.udf.resources.gpu: Invalid value: \"object\": udf.resources.gpu > 0 needs a worker group of type gpu"),
    ("gpu udf with gpu group", {**with_("udf", GPU_UDF), "cluster": {"workerGroups": [{"name": "g", "type": "gpu", "gpu": 1}]}}, None, None),
    ("gpu udf on existing cluster", {**with_("udf", GPU_UDF), "cluster": None, "existingCluster": {"name": "x"}}, None, None),
    ("secret in storage options", with_("table.storageOptions", {"AWS_Secret_Access_Key": "x"}), None,
     "spec.table.storageOptions: Invalid value: \"object\": storageOptions must not hold credentials"),
    ("web identity file is no secret", with_("table.storageOptions", {"aws_web_identity_token_file": "/t"}), None, None),
    ("duplicate group names", with_("cluster.workerGroups", [{"name": "a"}, {"name": "a"}]), None, "Duplicate value"),
    ("too many groups", with_("cluster.workerGroups", [{"name": f"g{i}"} for i in range(17)]), None, "must have at most 16 items"),
    ("bad quantity", with_("cluster.head", {"cpu": "one"}), None, "spec.cluster.head.cpu"),
    ("table uri changed", with_("table.uri", "s3://other/db"), BASE, "spec.table.uri: Invalid value: \"object\": uri is immutable"),
    ("table name changed", with_("table.name", "other"), BASE, "name is immutable"),
    ("column changed", with_("column", "other"), BASE, "spec.column: Invalid value: \"object\": column is immutable"),
    ("storage options changed", with_("table.storageOptions", {"region": "eu-west-1"}), BASE, None),
    ("new udf version", with_("udf.version", "2"), BASE, None),
    ("cluster scaled", with_("cluster.workerGroups", [{"name": "cpu", "replicas": 3, "maxReplicas": 3}]), BASE, None),
]
# Cases whose refusal pydantic cannot know: it sees no old object.
TRANSITION_ONLY = {"table uri changed", "table name changed", "column changed"}


def drop_empty(value):
    """A manifest without its empty maps and lists (the API server keeps some that pydantic drops)."""
    if isinstance(value, dict):
        return {k: drop_empty(v) for k, v in value.items() if v not in ({}, [])}
    return [drop_empty(v) for v in value] if isinstance(value, list) else value
