"""The CRD judged by the API server's own code (k8s.io/apiextensions-apiserver, run offline by
apiserver_check/main.go): the CRD must be accepted (structural schema, defaults, CEL compile
and cost), and each manifest below admitted or refused as kube-apiserver would, CEL rules
included. Every create case is also fed to pydantic: the python mirror of the rules must agree.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from geneva_operator.api import crd
from geneva_operator.api.models import BackfillSpec
from tests.unit.api.crd_cases import BASE, CASES, TRANSITION_ONLY, drop_empty, manifest, present

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CHECK_SRC = HERE / "apiserver_check"


def staging_version() -> str:
    text = (REPO / "tests/controlplane/versions.env").read_text()
    return re.search(r"^KUBERNETES_STAGING_VERSION=(\S+)", text, re.M).group(1)


@pytest.fixture(scope="session")
def apiserver_check() -> Path:
    go = shutil.which("go")
    assert go, "the Go toolchain is needed to build apiserver_check"
    sources = sorted(CHECK_SRC.glob("*.go")) + [CHECK_SRC / "go.mod", CHECK_SRC / "go.sum"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    binary = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geneva-operator" / "bin" / f"apiserver-check-{digest}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        built = subprocess.run([go, "build", "-o", str(binary), "."], cwd=CHECK_SRC, capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture(scope="session")
def crd_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crd") / crd.CRD_FILE
    path.write_text(crd.render())
    return path


def run(binary: Path, crd_file: Path, cases: list[dict] | None = None, tmp_path: Path | None = None) -> dict:
    args = [str(binary), str(crd_file)]
    if cases is not None:
        cases_file = tmp_path / "cases.json"
        cases_file.write_text(json.dumps(cases))
        args.append(str(cases_file))
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_the_check_pins_the_control_planes_kubernetes_version():
    assert f"k8s.io/apiextensions-apiserver {staging_version()}" in (CHECK_SRC / "go.mod").read_text()


def test_the_api_server_accepts_the_crd(apiserver_check, crd_file):
    # Structural schema, valid and pruned defaults, CEL rules compiling within the cost budget.
    assert run(apiserver_check, crd_file)["crdErrors"] == []


def test_the_api_server_refuses_a_broken_crd(apiserver_check, tmp_path):
    # The check can fail: a rule naming a field that does not exist does not compile.
    broken = crd.build_crd()
    schema = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schema["x-kubernetes-validations"].append({"rule": "self.noSuchField > 0", "message": "x"})
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    errors = run(apiserver_check, path)["crdErrors"]
    assert errors and "noSuchField" in errors[0]



@pytest.fixture(scope="module")
def admitted(apiserver_check, crd_file, tmp_path_factory) -> dict[str, dict]:
    cases = [{"name": n, "object": manifest(present(s)),
              **({"old": manifest(old)} if old else {})} for n, s, old, _ in CASES]
    out = run(apiserver_check, crd_file, cases, tmp_path_factory.mktemp("cases"))
    return {r["name"]: r for r in out["cases"]}


@pytest.mark.parametrize("name, spec, old, expected", CASES, ids=[c[0] for c in CASES])
def test_the_api_server_admits_or_refuses(admitted, name, spec, old, expected):
    errors = admitted[name]["errors"]
    if expected is None:
        assert errors == []
    else:
        assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("name, spec, old, expected", CASES, ids=[c[0] for c in CASES])
def test_pydantic_agrees_with_the_api_server(admitted, name, spec, old, expected):
    try:
        BackfillSpec.model_validate(present(spec))
        pydantic_ok = True
    except ValueError:
        pydantic_ok = False
    api_server_ok = not admitted[name]["errors"]
    assert pydantic_ok == (api_server_ok or name in TRANSITION_ONLY)


def test_the_api_servers_defaults_are_pydantics(admitted):
    served = admitted["minimal"]["defaulted"]["spec"]
    assert drop_empty(served) == drop_empty(BackfillSpec.model_validate(BASE).to_wire())
    assert BackfillSpec.model_validate(served) == BackfillSpec.model_validate(BASE)
