"""What the handlers observed, as typed facts: the input of `decide`.

Each problem the machine can meet is its own fact, named for what it is, and `blocking`
ranks them in one place: the one that governs this reconcile wins, whatever order the
handlers found them in.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Optional, Union

from ..api.job_contract import ProgressReport, RayJobState
from ..api.models import ActionError, BackfillSpec, BackfillStatus
from ..cluster.kuberay_features import Unsupported
from ..cluster.pods import PodProblem


class JobUnknown(str, Enum):
    """The two ways of not knowing the RayJobState of a submission id."""

    NOT_FOUND = "NOT_FOUND"  # the dashboard answered: no such submission id
    UNREACHABLE = "UNREACHABLE"  # the dashboard did not answer (yet)

    @property
    def terminal(self) -> bool:
        return False


@dataclass(frozen=True)
class ClusterView:
    """The RayCluster as observed: absent, or present with its readiness."""

    exists: bool
    ready: bool = False
    owned: bool = False  # its ownerReferences name this backfill
    deleting: bool = False  # deleted, waiting for its pods to go (metadata.deletionTimestamp)
    message: str = ""  # why it is not ready (KubeRay conditions), for humans
    patch: Optional[dict[str, Any]] = None  # in-place patch converging an owned cluster to the spec
    recreate: tuple[str, ...] = ()  # changed fields an in-place patch cannot apply
    image: Optional[str] = None  # of its head pod: the image the job runs in
    # Why its pods cannot start (cluster/pods.py); before a job is submitted it keeps the
    # cluster from counting as ready: a head without workers would take the job and hang.
    pod_problem: Optional[PodProblem] = None


@dataclass(frozen=True)
class JobView:
    submission_id: str
    state: Union[RayJobState, JobUnknown]
    message: str = ""
    progress: Optional[ProgressReport] = None  # the job's newest report (a ResultReport at the end)
    log_tail: Optional[str] = None  # driver log tail, read when the job is terminal


# ---------------------------------------------------------------- problems, one type each


@dataclass(frozen=True)
class SpecInvalid:
    """The stored spec does not validate (what the API server's schema cannot say)."""

    field: str
    message: str
    reason = "InvalidSpec"
    may_clear = False


@dataclass(frozen=True)
class SecretMissing:
    """The Ray token Secret (or its key) cannot be read. `may_clear`: the Secret does not
    exist yet, as when `kubectl apply -f dir/` or a GitOps sync creates the backfill first."""

    field: str
    message: str
    may_clear: bool = False
    reason = "AuthSecretNotFound"


@dataclass(frozen=True)
class ColumnHeld:
    """Another backfill writes this table column (columns.py): wait until it ends."""

    holder: str  # namespace/name
    message: str
    field = "spec.column"
    reason = "ColumnBusy"
    may_clear = True


@dataclass(frozen=True)
class RayAuthRefused:
    """Ray refused the token (also once re-read from its Secret)."""

    message: str
    field = "spec.auth.tokenSecretRef"
    reason = "RayAuthenticationFailed"
    may_clear = False


@dataclass(frozen=True)
class ActionRefused:
    """What the API server or Ray refused when the operator last acted (status.lastActionError)."""

    error: ActionError
    may_clear = False

    @property
    def field(self) -> str:
        return self.error.field

    @property
    def reason(self) -> str:
        return self.error.reason

    @property
    def message(self) -> str:
        return self.error.message


@dataclass(frozen=True)
class ExistingClusterMissing:
    """spec.existingCluster names no RayCluster (yet)."""

    name: str
    namespace: str
    field = "spec.existingCluster.name"
    reason = "ExistingClusterNotFound"
    may_clear = True

    @property
    def message(self) -> str:
        return f"RayCluster {self.name} not found in namespace {self.namespace}"


@dataclass(frozen=True)
class KubeRayTooOld:
    """The spec asks for a RayCluster field the installed KubeRay's CRD lacks
    (cluster/kuberay_features.py): an edit or a KubeRay upgrade is the way out."""

    field: str
    message: str
    reason = "KubeRayTooOld"
    may_clear = False


@dataclass(frozen=True)
class KubeRayUnknown:
    """The spec asks for a field only some KubeRay releases have, and the operator may not
    read KubeRay's CRD to tell (RBAC): the message says what to grant."""

    field: str
    message: str
    reason = "KubeRayUnknown"
    may_clear = False


def kuberay_problem(u: Optional[Unsupported]) -> Optional[Union[KubeRayTooOld, KubeRayUnknown]]:
    if u is None:
        return None
    kind = KubeRayUnknown if u.reason == KubeRayUnknown.reason else KubeRayTooOld
    return kind(u.requirement.field, u.message)


Problem = Union[SpecInvalid, KubeRayTooOld, KubeRayUnknown, SecretMissing, ColumnHeld, RayAuthRefused, ActionRefused,
                ExistingClusterMissing]


@dataclass(frozen=True)
class Observed:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: Optional[BackfillSpec]  # None when the stored spec does not validate (see spec_error)
    status: BackfillStatus
    now: datetime
    cluster_name: str  # ours (deterministic) or spec.existingCluster.name
    dashboard_url: Optional[str] = None
    deleting: bool = False
    cluster: Optional[ClusterView] = None  # None: not observed (see `needs`)
    job: Optional[JobView] = None  # the job named by status.jobId, if observed
    default_image: Optional[str] = None  # the operator's, for spec.cluster.image unset
    spec_error: Optional[SpecInvalid] = None
    kuberay: Optional[Union[KubeRayTooOld, KubeRayUnknown]] = None  # what of the spec the installed KubeRay lacks
    secret: Optional[SecretMissing] = None
    column: Optional[ColumnHeld] = None
    ray_auth: Optional[RayAuthRefused] = None


def blocking(o: Observed, status: BackfillStatus) -> Optional[Problem]:
    """The problem that governs this reconcile, in rank order: a spec (invalid, or more than
    the installed KubeRay serves) or an earlier action that needs an edit, then the token (no
    Ray call works without it), then the column (the other backfill may end, but our own
    inputs must be there first). `status`: the one being decided (a new run forgets the last
    run's refused action)."""
    refused = ActionRefused(status.last_action_error) if status.last_action_error is not None else None
    for problem in (o.spec_error, o.kuberay, refused, o.secret, o.ray_auth, o.column):
        if problem is not None:
            return problem
    return None


@dataclass(frozen=True)
class Needs:
    """What the handlers must observe before calling `decide` (only what it will use)."""

    cluster: bool = False
    job_id: Optional[str] = None
    inputs: bool = False  # check referenced objects (auth Secret)

    @property
    def anything(self) -> bool:
        return self.cluster or self.job_id is not None or self.inputs
