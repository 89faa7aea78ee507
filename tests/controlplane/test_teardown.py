"""What a stopped test run leaves behind: nothing (tests/sigterm.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

RUN = textwrap.dedent('''
    import subprocess, time
    from pathlib import Path
    import pytest

    HERE = Path(__file__).parent

    @pytest.fixture(scope="session")
    def started():
        child = subprocess.Popen(["sleep", "300"])
        (HERE / "child.pid").write_text(str(child.pid))
        yield child
        child.kill()
        child.wait()
        (HERE / "torn-down").write_text("yes")

    def test_runs_long(started):
        time.sleep(300)
''')


def test_a_run_stopped_with_sigterm_runs_its_fixtures_teardown(tmp_path):
    (tmp_path / "test_long.py").write_text(RUN)
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "tests.sigterm", "-p", "no:cacheprovider",
                            "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_long.py")],
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid_file.exists(), run.communicate()[0] if run.poll() is not None else "the fixture never started"
    time.sleep(0.5)  # into the test's sleep
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=60)
    assert (tmp_path / "torn-down").exists(), out
    child = int(pid_file.read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], out
    assert run.returncode != 0 and "KeyboardInterrupt" in out, out
