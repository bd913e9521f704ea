"""`pillbox run` refuses options that cannot work before starting anything, naming them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRASHAPP_DATABASE": f"sqlite:///{tmp_path}/run.db",
           "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pillbox", "run", "crashapp:app", *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize(("args", "code", "complaint"), [
    (["--shutdown-grace", "-5"], 2, "--shutdown-grace"),
    (["--memory-limit", "1KB"], 2, "below 32 MiB"),
    (["--only", "web"], 1, "nothing to run: asked for web, but the app declares only worker"),
])
def test_options_that_cannot_work_are_refused(tmp_path, args, code, complaint):
    done = run(tmp_path, *args)
    assert done.returncode == code, done.stdout + done.stderr
    assert complaint in done.stderr, done.stderr
    assert "supervisor.started" not in done.stdout
