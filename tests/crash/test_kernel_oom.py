"""A worker the kernel's OOM killer takes (not pillbox's own memory limit) is recognised: the
crash record says cause "memory" and names the OOM killer, and the message is quarantined.

The test runs `pillbox run` in a memory cgroup of its own, made under the cgroup this test
runs in, with a limit far below the memory bomb and far below the subscription's
memory_limit, so that the kernel, not the supervisor, kills the worker."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import eventually
from pillbox.supervisor.oom import CGROUP_ROOT

pytestmark = pytest.mark.crash

LIMIT_BYTES = 600 * 2**20


def _own_memory_cgroup() -> tuple[Path, str] | None:
    """(directory, limit file name) of our memory cgroup, v1 or v2, if we may make one below."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/"), "memory.limit_in_bytes"
        if hierarchy == "0" and controllers == "":
            here = CGROUP_ROOT / path.lstrip("/")
            with contextlib.suppress(OSError):
                if "memory" in (here / "cgroup.subtree_control").read_text().split():
                    return here, "memory.max"
    return None


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    found = _own_memory_cgroup()
    if found is None:
        pytest.skip("no memory cgroup this test may create children in")
    parent, limit_file = found
    cgroup = parent / f"pillbox-oom-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        cgroup.mkdir()
        (cgroup / limit_file).write_text(str(LIMIT_BYTES))
    except OSError as exc:  # not root, or a read-only cgroup mount (some containers)
        pytest.skip(f"cannot make a memory cgroup under {parent}: {exc}")
    yield cgroup
    eventually(lambda: _removed(cgroup), timeout_s=10)


def _removed(cgroup: Path) -> bool:
    """Kill what is left of the run in `cgroup`, then remove it (busy until they have exited)."""
    with contextlib.suppress(FileNotFoundError):
        for pid in (cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    try:
        cgroup.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:  # busy while the last process of the run is still exiting
        raise AssertionError(f"cannot remove {cgroup}: {exc}") from None
    return True


@pytest.mark.parametrize("engine", ["sqlite"])  # the OOM killer does not care which engine
def test_kernel_oom_kill_is_recognised_and_the_bomb_quarantined(
    fixture_app, run_app, db_url, memory_cgroup
):
    good = [fixture_app.publish("jobs", {"mode": "ok", "i": i}) for i in range(20)]
    bomb = fixture_app.publish("jobs", {"mode": "oom"})
    running = run_app(db_url, "--workers", "1", cgroup=memory_cgroup,
                      CRASHAPP_TIMEOUT="30", CRASHAPP_MEMORY_LIMIT="20GB")

    def quarantined() -> bool:
        assert running.proc.poll() is None, running.output()[-3000:]
        (delivery,) = running.broker.deliveries(message_id=bomb)
        assert delivery.state == "dead", delivery
        return True

    eventually(quarantined, timeout_s=120, interval_s=0.2)
    delivery = running.broker.delivery(running.broker.deliveries(message_id=bomb)[0].id)
    assert delivery is not None and delivery.dead_reason == "poison pill"
    records = [running.broker.crash(i) for i in delivery.crash_ids]
    assert records and all(r is not None for r in records)
    assert {r.cause for r in records if r is not None} == {"memory"}, \
        [r.summary for r in records if r is not None]
    assert all("OOM killer" in r.summary for r in records if r is not None)
    eventually(lambda: len(running.broker.deliveries(subscription="jobs", state="acked"))
               == len(good), timeout_s=60)
    assert running.stop() == 0
