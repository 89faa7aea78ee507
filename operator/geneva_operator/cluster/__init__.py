"""Pure builders of the Kubernetes objects behind a GenevaBackfill: spec in, manifest dict out."""
from .names import (
    BACKFILL_LABEL,
    MANAGED_BY_LABEL,
    SPEC_HASH_ANNOTATION,
    dashboard_url,
    label_value,
    ray_cluster_name,
)
from .raycluster import build_ray_cluster, ray_image, token_secret_ref
from .update import in_place_patch, needs_recreate, spec_hash

__all__ = [
    "BACKFILL_LABEL",
    "MANAGED_BY_LABEL",
    "SPEC_HASH_ANNOTATION",
    "build_ray_cluster",
    "dashboard_url",
    "in_place_patch",
    "label_value",
    "needs_recreate",
    "ray_cluster_name",
    "ray_image",
    "spec_hash",
    "token_secret_ref",
]
