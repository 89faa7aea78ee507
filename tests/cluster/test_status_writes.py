"""How the operator writes a GenevaBackfill's status (kube.Kube.patch_backfill_status), against
the real API server: a merge patch of the status subresource that carries the resourceVersion
the status was decided on, so a decision made on an outdated copy of the resource is refused
(the handlers then drop it whole and decide again on a fresh read, kube.Kube.get_backfill;
see handlers/backfill.py)."""
from __future__ import annotations

import asyncio

import pytest
from kubernetes import config

from geneva_operator.kube import Kube, StatusConflict

from operator_fixtures import Api, apply, backfill_manifest, crd, example_manifest  # noqa: F401  (fixture by import)

NAME = example_manifest()["metadata"]["name"]


def test_a_status_patch_applies_only_to_the_resource_version_it_was_made_for(control_plane, crd, namespace, tmp_path):
    apply(control_plane, backfill_manifest(namespace, tmp_path / "db"))
    api = Api(control_plane.kubeconfig)
    created = api.get("backfill", namespace, NAME)
    kube = Kube(config.new_client_from_config(config_file=str(control_plane.kubeconfig)))

    async def main() -> None:
        seen = created["metadata"]["resourceVersion"]
        written, status = await kube.patch_backfill_status(namespace, NAME, seen, {"phase": "Pending", "reason": "RunStarted"})
        assert written != seen and status == {"phase": "Pending", "reason": "RunStarted"}
        # A copy from before that write: refused, whatever it would write, even nothing at all.
        for status in ({"phase": "Failed"}, {}):
            with pytest.raises(StatusConflict, match=seen):
                await kube.patch_backfill_status(namespace, NAME, seen, status)
        # Nothing to write on the current copy: the check alone, which moves nothing.
        assert (await kube.patch_backfill_status(namespace, NAME, written, {})).version == written
        last = await kube.patch_backfill_status(namespace, NAME, written, {"reason": None})
        assert last != (written, {"phase": "Pending"})
        # The fresh read after a refusal: the resource as the last write left it; None once gone.
        fresh = await kube.get_backfill(namespace, NAME)
        assert fresh["metadata"]["resourceVersion"] == last.version and fresh["status"] == last.status
        assert fresh["spec"] == created["spec"]
        assert await kube.get_backfill(namespace, "no-such-backfill") is None

    asyncio.run(main())
    stored = api.get("backfill", namespace, NAME)
    assert stored["status"] == {"phase": "Pending"}  # merged, None deleted a key
    assert stored["spec"] == created["spec"] and stored["metadata"]["generation"] == created["metadata"]["generation"]
