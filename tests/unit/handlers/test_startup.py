"""Operator start: when kopf's cluster-wide discovery is skipped."""
from __future__ import annotations

import asyncio

from geneva_operator.handlers.startup import namespaced_only


class Kube:
    def __init__(self, may_list_namespaces: bool):
        self.allowed = may_list_namespaces
        self.asked: list[tuple[str, str]] = []

    async def may(self, verb: str, resource: str, group: str = "") -> bool:
        self.asked.append((verb, resource))
        return self.allowed


def test_named_namespaces_without_the_right_to_list_namespaces_skip_discovery():
    kube = Kube(may_list_namespaces=False)
    assert asyncio.run(namespaced_only(kube, ["team-a", "team-b"])) is True
    assert kube.asked == [("list", "namespaces")]


def test_an_operator_that_may_list_namespaces_keeps_kopfs_discovery():
    # It then also notices namespaces and CRDs that appear later.
    assert asyncio.run(namespaced_only(Kube(may_list_namespaces=True), ["team-a"])) is False


def test_all_namespaces_or_a_glob_keep_discovery_without_asking():
    for namespaces in ([], ["team-*"], ["!kube-system"]):
        kube = Kube(may_list_namespaces=False)
        assert asyncio.run(namespaced_only(kube, namespaces)) is False
        assert kube.asked == []
