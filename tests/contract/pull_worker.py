"""One puller process of test_concurrency: pulls and acks until the subscription is done.

    python pull_worker.py URL SUBSCRIPTION OWNER LIMIT LEASE_S STALL_EVERY OUT.json

Prints "ready", waits for a line on stdin (so every worker starts at once), then records
each lease it got as [delivery_id, token, owner, leased_at, deadline, ack_at, acked] in OUT.
A delivery whose id is a multiple of STALL_EVERY is held on its first attempt until the
parent's rescue_expired has taken the lease away; the late ack must then fail.
"""

from __future__ import annotations

import json
import sys
import time

from pillbox.broker import SQLBroker, open_broker


def main(url: str, sub: str, owner: str, limit: int, lease_s: float, stall_every: int,
         out: str) -> None:
    broker = open_broker(url, migrate=False, pool_size=1)
    records = []
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        leased_at = time.time()
        leases = broker.pull(sub, owner, limit, lease_s, leased_at)
        if not leases:
            if broker.unfinished(sub) == 0:
                break
            time.sleep(0.005)  # what is left is leased by others; look again soon
            continue
        for lease in leases:
            if lease.delivery_id % stall_every == 0 and lease.message.attempt == 1:
                _hold_until_taken_over(broker, lease.delivery_id)
            ack_at = time.time()
            acked = broker.ack(lease, ack_at)
            records.append([lease.delivery_id, lease.token, owner, leased_at, lease.deadline,
                            ack_at, acked])
    broker.close()
    with open(out, "w") as f:
        json.dump(records, f)


def _hold_until_taken_over(broker: SQLBroker, delivery_id: int, timeout_s: float = 60.0) -> None:
    """Stall like a hung handler until the janitor has rescued the lease (the delivery is
    available again, or already leased by someone else for its next attempt)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        d = broker.delivery(delivery_id)
        if d is not None and (d.state != "leased" or d.attempt > 1):
            return
        time.sleep(0.02)


if __name__ == "__main__":
    url, sub, owner, limit, lease_s, stall_every, out = sys.argv[1:]
    main(url, sub, owner, int(limit), float(lease_s), int(stall_every), out)
