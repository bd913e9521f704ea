"""Four processes pull 10,000 messages from one subscription at once, on every engine.

Every message must be acked exactly once, and a delivery is never leased to a second owner
before the first lease ended. A few deliveries are held past their lease on purpose, so the
parent's rescue_expired hands them to another worker while the old holder still has them:
the old holder's late ack must fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

from helpers import Sub
from pillbox.broker import SQLBroker

MESSAGES = 10_000
WORKER_LIMITS = (1, 5, 10, 25)  # pull batch size of each worker process
LEASE_S = 1.0
STALL_EVERY = 2_500  # delivery ids 2500, 5000, 7500, 10000 outlive their first lease
WORKER = Path(__file__).with_name("pull_worker.py")


def test_four_processes_ack_every_message_exactly_once_and_never_share_a_lease(
        db_url: str, open_brokers: Callable[..., SQLBroker], tmp_path: Path) -> None:
    # Given 10,000 messages waiting in one subscription
    broker = open_brokers(db_url)
    broker.register(["jobs"], [Sub("crunch", "jobs")], time.time())
    for start in range(0, MESSAGES, 1000):
        broker.publish_batch("jobs", [json.dumps({"n": n}) for n in range(start, start + 1000)],
                             time.time())
    expected = {d.id for d in broker.deliveries(subscription="crunch", limit=MESSAGES + 1)}
    assert len(expected) == MESSAGES

    # When four worker processes pull and ack them concurrently while we rescue expired leases
    outputs = [tmp_path / f"worker{i}.json" for i in range(len(WORKER_LIMITS))]
    procs = [subprocess.Popen(
        [sys.executable, str(WORKER), db_url, "crunch", f"w{i}", str(limit), str(LEASE_S),
         str(STALL_EVERY), str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, (limit, out) in enumerate(zip(WORKER_LIMITS, outputs, strict=True))]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        rescued = _rescue_until_done(broker, procs, timeout_s=240)
        errors = [proc.stderr.read() for proc in procs if proc.stderr]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0] * len(procs), errors

    # Then every message was acked exactly once, by whichever worker held its lease
    records = [r for out in outputs for r in json.loads(out.read_text())]
    acks = Counter(did for did, _, _, _, _, _, acked in records if acked)
    assert set(acks) == expected
    assert set(acks.values()) == {1}
    per_owner = Counter(owner for _, _, owner, _, _, _, acked in records if acked)
    assert sorted(per_owner) == [f"w{i}" for i in range(len(WORKER_LIMITS))]  # all took part

    # and no delivery was leased again before its previous lease had ended, nor after its ack
    leases = defaultdict(list)
    for did, token, owner, leased_at, deadline, ack_at, acked in records:
        leases[did].append((leased_at, deadline, ack_at, acked, owner, token))
    for did, history in leases.items():
        history.sort()
        assert len({token for *_, token in history}) == len(history), did
        for earlier, later in pairwise(history):
            assert not earlier[3], f"delivery {did} leased again after it was acked"
            assert later[0] > earlier[1], f"delivery {did} leased by two owners at once"

    # and the deliberately stalled deliveries were taken over, their old holders' acks refused
    stalled = [did for did in expected if did % STALL_EVERY == 0]
    assert stalled
    for did in stalled:
        assert len(leases[did]) >= 2, did
        assert leases[did][0][3] is False, f"the stalled holder of {did} still acked it"
    assert rescued >= len(stalled)
    [stats] = [s for s in broker.stats(time.time()) if s.name == "crunch"]
    assert (stats.backlog, stats.in_flight, stats.dead) == (0, 0, 0)
    assert len(broker.deliveries(subscription="crunch", state="acked",
                                 limit=MESSAGES + 1)) == MESSAGES


def _rescue_until_done(broker: SQLBroker, procs: list[subprocess.Popen[str]],
                       timeout_s: float) -> int:
    """Play the janitor: rescue expired leases every 50 ms until the workers exit."""
    rescued = 0
    deadline = time.monotonic() + timeout_s
    while any(proc.poll() is None for proc in procs):
        assert time.monotonic() < deadline, "workers did not finish in time"
        rescued += broker.rescue_expired(time.time())
        time.sleep(0.05)
    return rescued
