"""The main job end to end: `pillbox drill` replays the original outage against the example
app under the real `pillbox run`, and the promise is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.crash


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_drill_poison_pill_keeps_the_promise(engine, tmp_path, request):
    args = ["poison-pill", "--duration", "12", "--json", str(tmp_path / "report.json"),
            "--picture", str(tmp_path / "timeline.svg")]
    if engine == "postgres":
        args += ["--database", request.getfixturevalue("postgres_server_url")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILLBOX_")}
    done = subprocess.run([sys.executable, "-m", "pillbox", "drill", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is True and report["failures"] == []
    assert report["web"]["availability_pct"] >= 99.9
    assert report["web"]["requests"] > 100
    poison = report["poison"]
    assert poison["dead_reason"] == "poison pill" and poison["crashes"] == 3
    assert poison["causes"] == ["segfault"]
    assert poison["quarantined_after_s"] < 10
    assert poison["top_frame"].endswith("render.py:20 in render_welcome")
    good = report["good_messages"]
    assert good["published"] > 20 and good["lost"] == 0 and good["charged_a_crash"] == 0
    svg = (tmp_path / "timeline.svg").read_text()
    assert svg.startswith("<svg") and "quarantined" in svg
    assert "PROMISE KEPT" in done.stdout
