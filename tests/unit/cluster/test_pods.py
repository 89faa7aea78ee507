"""Why a Ray cluster's pods do not start, from their status as the kubelet and the scheduler
write it (tests/unit/pod_statuses.py): an image not to be had, a group no node will take."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
import pod_statuses as ps  # noqa: E402

from geneva_operator.cluster.pods import IMAGE_PULL_FAILED, UNSCHEDULABLE, pod_problem, slim_pod  # noqa: E402

GPU_LABEL = "geneva.lancedb.com/ray-worker-gpu"


def test_a_head_whose_image_is_not_on_the_node_names_the_image_and_the_kubelets_reason():
    problem = pod_problem([ps.never_pulled(ps.head("geneva-ray-worker:dev"))])
    assert problem.reason == IMAGE_PULL_FAILED and not problem.permanent
    assert problem.message == ('head pod bf-ray-head-7xk2p: image geneva-ray-worker:dev: ErrImageNeverPull: '
                               'Container image "geneva-ray-worker:dev" is not present with pull policy of Never')


@pytest.mark.parametrize("make, reason", [(ps.pull_backoff, "ImagePullBackOff"),
                                          (lambda p: ps.image_waiting(p, "ErrImagePull", "rpc error: not found"), "ErrImagePull")])
def test_a_worker_whose_init_container_cannot_pull_names_its_group_and_image(make, reason):
    pods = [ps.running(ps.head()), make(ps.worker(image="rayproject/ray:nope"))]
    problem = pod_problem(pods)
    assert problem.reason == IMAGE_PULL_FAILED and not problem.permanent
    assert problem.message.startswith(f"worker group cpu (pod bf-ray-cpu-worker-q8v4n): image rayproject/ray:nope: {reason}: ")


def test_an_invalid_image_name_is_permanent():
    problem = pod_problem([ps.invalid_name(ps.head("Ray:Latest"))])
    assert problem.reason == IMAGE_PULL_FAILED and problem.permanent
    assert "image Ray:Latest: InvalidImageName: Failed to apply default image tag" in problem.message


def test_an_unschedulable_group_names_its_node_selector_and_the_schedulers_message():
    gpu = ps.worker("gpu", "z2m9c", node_label=GPU_LABEL)
    problem = pod_problem([ps.running(ps.head()), ps.running(ps.worker()), ps.unschedulable(gpu)])
    assert problem.reason == UNSCHEDULABLE and not problem.permanent
    assert problem.message == (f"worker group gpu (pod bf-ray-gpu-worker-z2m9c) is unschedulable (node selector {GPU_LABEL}=true): "
                               + ps.SCHEDULER_MESSAGE)


def test_a_group_with_a_ready_pod_runs_whatever_its_other_pods_wait_for():
    pods = [ps.running(ps.head()), ps.running(ps.worker()), ps.unschedulable(ps.worker(suffix="b7r2x")),
            ps.pull_backoff(ps.worker(suffix="c4t6w"))]
    assert pod_problem(pods) is None


def test_pods_being_created_or_no_pods_at_all_are_no_problem():
    assert pod_problem([ps.creating(ps.head()), ps.creating(ps.worker())]) is None
    assert pod_problem([ps.head(), ps.worker()]) is None  # just created: no status yet
    assert pod_problem([]) is None


def test_the_head_comes_first_and_a_permanent_problem_before_any_other():
    stuck_head = ps.unschedulable(ps.head())
    assert pod_problem([ps.never_pulled(ps.worker()), stuck_head]).message.startswith("head pod ")
    problem = pod_problem([stuck_head, ps.invalid_name(ps.worker(image="Bad:Name"))])
    assert problem.permanent and problem.message.startswith("worker group cpu ")


def test_a_long_scheduler_message_is_cut_and_kept_on_one_line():
    long = "0/900 nodes are available:\n" + "; ".join(f"{n} node(s) had untolerated taint {{t{n}: x}}" for n in range(200))
    problem = pod_problem([ps.unschedulable(ps.head(), long)])
    assert "\n" not in problem.message and problem.message.endswith("...") and len(problem.message) < 600


@pytest.mark.parametrize("pod", [ps.never_pulled(ps.head()), ps.pull_backoff(ps.worker()), ps.invalid_name(ps.head("A:B")),
                                 ps.unschedulable(ps.worker("gpu", node_label=GPU_LABEL)), ps.running(ps.worker()),
                                 ps.creating(ps.head())])
def test_the_slim_copy_the_index_keeps_reads_the_same_and_drops_the_rest(pod):
    slim = slim_pod(pod)
    assert pod_problem([slim]) == pod_problem([pod])
    assert "managedFields" not in slim["metadata"] and "volumes" not in slim["spec"] and "resources" not in str(slim)
