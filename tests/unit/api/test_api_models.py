"""The GenevaBackfill spec as pydantic reads it: defaults, and errors that name the field."""
from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from geneva_operator.api.models import SECRET_STORAGE_OPTION_KEYS, BackfillSpec, BackfillStatus, Rule

BASE = {
    "table": {"uri": "s3://bucket/db", "name": "captions", "storageOptions": {"region": "us-east-1"}},
    "column": "caption_len",
    "udf": {"function": "my_udfs.text:length", "inputColumns": ["caption"], "outputType": "int32"},
    "cluster": {},
}


def spec(**changes) -> dict:
    """BASE with top-level keys replaced (None removes one)."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def errors_of(raw: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        BackfillSpec.model_validate(raw)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_a_minimal_spec_gets_the_documented_defaults():
    s = BackfillSpec.model_validate(spec())
    assert (s.mode, s.commit_every, s.backoff_limit, s.startup_deadline_seconds, s.suspend) == ("Missing", 16, 2, 900, False)
    assert (s.udf.kind, s.udf.version, s.udf.batch_size) == ("Batch", "1", 4096)
    assert (s.udf.resources.cpu, s.udf.resources.gpu) == (1.0, 0.0)
    assert (s.cleanup.policy, s.cleanup.ttl_seconds_after_finished) == ("Always", 600)
    assert s.cluster.ray_version == "2.60.0"
    assert s.cluster.image is None  # the operator's default ray-worker image (settings.default_ray_image)
    [group] = s.cluster.worker_groups
    assert (group.name, group.type, group.replicas, group.min_replicas, group.max_replicas) == ("cpu", "cpu", 1, 0, 1)
    assert s.auth.token_secret_ref is None


def test_the_design_example_is_valid():
    raw = spec(
        where="lang = 'en'",
        commitEvery=16,
        cluster={
            "rayVersion": "2.60.0",
            "image": "rayproject/ray:2.60.0-py311",
            "serviceAccountName": "geneva-ray-runner",
            "head": {"cpu": "1", "memory": "2Gi"},
            "workerGroups": [
                {"name": "cpu", "type": "cpu", "replicas": 2, "minReplicas": 0, "maxReplicas": 8, "cpu": "4", "memory": "8Gi"},
                {"name": "gpu", "type": "gpu", "replicas": 0, "maxReplicas": 2, "cpu": "8", "memory": "16Gi", "gpu": 1},
            ],
            "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
        },
        cleanup={"policy": "Always", "ttlSecondsAfterFinished": 600},
    )
    assert BackfillSpec.model_validate(raw).to_wire()["cluster"]["workerGroups"][1]["gpu"] == 1


def test_exactly_one_of_cluster_and_existing_cluster():
    both = spec(existingCluster={"name": "shared-ray"})
    neither = spec(cluster=None)
    for raw in (both, neither):
        assert ("", "Value error, exactly one of cluster and existingCluster must be set") in errors_of(raw)
    assert BackfillSpec.model_validate(spec(cluster=None, existingCluster={"name": "shared-ray"})).existing_cluster.name == "shared-ray"


@pytest.mark.parametrize(
    "group, message",
    [
        ({"name": "w", "replicas": 1, "minReplicas": 2, "maxReplicas": 3}, "minReplicas must not exceed replicas"),
        ({"name": "w", "replicas": 4, "maxReplicas": 3}, "replicas must not exceed maxReplicas"),
        ({"name": "w", "type": "gpu"}, "gpu must be > 0 when type is gpu, and 0 when type is cpu"),
        ({"name": "w", "type": "cpu", "gpu": 1}, "gpu must be > 0 when type is gpu, and 0 when type is cpu"),
    ],
)
def test_worker_group_rules_name_the_group_and_the_field(group, message):
    [(loc, msg)] = errors_of(spec(cluster={"workerGroups": [group]}))
    assert loc == "cluster.workerGroups.0"
    assert msg == f"Value error, {message}"


def test_worker_group_names_are_unique():
    [(loc, msg)] = errors_of(spec(cluster={"workerGroups": [{"name": "a"}, {"name": "a"}]}))
    assert loc == "cluster.workerGroups" and "a repeated" in msg


def test_at_most_sixteen_worker_groups():
    groups = [{"name": f"g{i}"} for i in range(17)]
    [(loc, msg)] = errors_of(spec(cluster={"workerGroups": groups}))
    assert loc == "cluster.workerGroups" and "at most 16" in msg


def test_a_gpu_udf_needs_a_gpu_group_in_its_own_cluster():
    udf = {**BASE["udf"], "resources": {"gpu": 1}}
    assert ("", "Value error, udf.resources.gpu > 0 needs a worker group of type gpu in cluster.workerGroups") in errors_of(
        spec(udf=udf)
    )
    with_gpu = {"workerGroups": [{"name": "g", "type": "gpu", "gpu": 1, "replicas": 1}]}
    assert BackfillSpec.model_validate(spec(udf=udf, cluster=with_gpu)).udf.resources.gpu == 1
    # An existing cluster's groups are not ours to know.
    assert BackfillSpec.model_validate(spec(udf=udf, cluster=None, existingCluster={"name": "x"}))


@pytest.mark.parametrize("key", ["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "session_token", "google_service_account_key"])
def test_storage_options_refuse_credentials(key):
    table = {**BASE["table"], "storageOptions": {"region": "us-east-1", key: "x"}}
    [(loc, msg)] = errors_of(spec(table=table))
    assert loc == "table" and "storageOptions must not hold credentials" in msg


def test_storage_options_accept_non_secret_settings():
    options = {"region": "us-east-1", "endpoint": "http://127.0.0.1:9000", "aws_access_key_id": "AKIA", "aws_web_identity_token_file": "/var/run/t"}
    table = {**BASE["table"], "storageOptions": options}
    assert BackfillSpec.model_validate(spec(table=table)).table.storage_options == options


def test_field_errors_name_the_camel_case_field():
    errors = dict(errors_of(spec(column="_geneva_x", udf={**BASE["udf"], "batchSize": 0})))
    assert "column" in errors and "reserved prefix" in errors["column"]
    assert "udf.batchSize" in errors


def test_unknown_fields_are_refused_with_their_name():
    [(loc, msg)] = errors_of(spec(colum="typo"))
    assert loc == "colum" and "Extra inputs" in msg


def test_every_rule_with_a_check_is_consistent_with_its_cel_on_the_happy_path():
    # The mirror must accept what the API server accepts: a valid spec passes every check.
    s = BackfillSpec.model_validate(spec())
    models = [s, s.table, s.cluster.worker_groups[0]]
    for model in models:
        for rule in type(model).cel_rules:
            assert isinstance(rule, Rule)
            assert rule.check is None or rule.check(model), rule.cel


def test_transition_rules_are_api_server_only():
    # Rules on oldSelf cannot run in pydantic: their check must be None, all others must have one.
    for model in (BackfillSpec, BackfillSpec.model_fields["table"].annotation):
        for rule in model.cel_rules:
            assert (rule.check is None) == ("oldSelf" in rule.cel), rule.cel


def test_secret_keys_are_lower_case_because_both_sides_lower_the_key():
    assert all(k == k.lower() for k in SECRET_STORAGE_OPTION_KEYS)


def test_status_round_trips_with_dashboard_url_alias():
    status = BackfillStatus.model_validate({"phase": "Running", "dashboardURL": "http://x:8265", "progress": {"percent": 41}})
    assert status.to_wire() == {
        "phase": "Running",
        "dashboardURL": "http://x:8265",
        "attempts": 0,
        "conditions": [],
        "progress": {"fragmentsDone": 0, "fragmentsTotal": 0, "rowsDone": 0, "rowsTotal": 0, "percent": 41},
    }
