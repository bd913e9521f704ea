"""Crash attribution: who pays for a dead process. Pure.

- killed for a timeout: the timed-out delivery is the culprit; the others are released;
- alone in flight (or in the isolation lane): the culprit;
- several in flight: each is a suspect, retried alone so the culprit is found and innocents
  lose nothing; the one whose thread crashed the process (faulthandler's current thread) is
  the prime suspect: it is charged the crash, short of quarantine, and so runs in the lane
  after its innocent siblings;
- leased but never started: released;
- finished with success but not yet acked (acks ride on the next pull): acked for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pillbox.broker.base import CULPRIT, FINISHED, PRIME, RELEASED, SUSPECT


@dataclass(frozen=True)
class Started:
    delivery_id: int
    token: str
    subscription: str
    message_id: str
    thread: str | None
    started_at: float
    timeout_s: float
    memory_limit_bytes: int | None


def attribute(started: list[Started], leased: list[tuple[int, str]],
              blamed: int | None, finished: dict[int, str] | None = None,
              crashed_thread: str | None = None) -> list[tuple[int, str, str]]:
    """(delivery_id, token, role) for everything the dead process held.

    `blamed`: a delivery the supervisor itself singled out (the one that timed out).
    `finished`: delivery id -> lease token of handlers the process reported successful.
    `crashed_thread`: the thread (hex id) that took the process down, when its fault dump
    says so.
    """
    finished = finished or {}
    roles: list[tuple[int, str, str]] = []
    started_ids = {s.delivery_id for s in started}
    if blamed is not None and blamed in started_ids:
        roles += [(s.delivery_id, s.token, CULPRIT if s.delivery_id == blamed else RELEASED)
                  for s in started]
    elif len(started) == 1:
        roles.append((started[0].delivery_id, started[0].token, CULPRIT))
    else:
        prime = thread_number(crashed_thread)
        roles += [(s.delivery_id, s.token,
                   PRIME if prime is not None and thread_number(s.thread) == prime else SUSPECT)
                  for s in started]
    roles += [(d, t, FINISHED if finished.get(d) == t else RELEASED)
              for d, t in leased if d not in started_ids]
    return roles


def thread_number(thread: str | None) -> int | None:
    try:
        return int(thread, 16) if thread else None
    except ValueError:
        return None
