"""Judges a drill outcome against pillbox's promise and prints the report."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from pillbox.drill.runner import Outcome
from pillbox.forensics.faultlog import top_frame
from pillbox.supervisor.postmortem import LIBRARY_PATHS

MIN_AVAILABILITY = 99.9
HANDLER_FRAME = "in welcome"


@dataclass
class Report:
    scenario: str
    database: str
    duration_s: float
    web: dict[str, Any]
    poison: dict[str, Any]
    good: dict[str, Any]
    restarts: dict[str, int]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "database": self.database,
                "duration_s": round(self.duration_s, 1), "passed": self.passed,
                "failures": self.failures, "web": self.web, "poison": self.poison,
                "good_messages": self.good, "restarts": self.restarts}


def judge(outcome: Outcome) -> Report:
    report = Report(scenario=outcome.scenario.name, database=_redact(outcome.database),
                    duration_s=outcome.ended_at - outcome.started_at, web=_web(outcome),
                    poison=_poison(outcome), good=_good(outcome), restarts=_restarts(outcome))
    report.failures = _failures(outcome, report)
    return report


def _web(outcome: Outcome) -> dict[str, Any]:
    traffic = outcome.traffic
    probes = sorted(traffic.probes, key=lambda p: p.at)
    sent = len(probes) + len(traffic.published) + len(traffic.publish_errors)
    ok_times = [p.at for p in probes if p.ok] + [p.at for p in traffic.published]
    failed = [p for p in probes if not p.ok]
    succeeded = sent - len(failed) - len(traffic.publish_errors)
    last = max((p.at for p in probes), default=outcome.started_at)
    edges = [outcome.started_at, *sorted(ok_times), last]
    gap = max((b - a for a, b in itertools.pairwise(edges)), default=0.0)
    errors: dict[str, int] = {}
    for probe in failed:
        errors[probe.error] = errors.get(probe.error, 0) + 1
    for error in traffic.publish_errors:
        errors[error[:80]] = errors.get(error[:80], 0) + 1
    return {"requests": sent, "succeeded": succeeded, "failed": sent - succeeded,
            "availability_pct": round(100.0 * succeeded / sent, 3) if sent else 0.0,
            "longest_gap_s": round(gap, 3), "errors": errors}


def _poison(outcome: Outcome) -> dict[str, Any]:
    poison = outcome.poison
    charged = [c for c in outcome.crashes if poison and c.id in poison.crash_ids]
    tracebacks = [c.traceback for c in charged if c.traceback]
    handler_tb = next((tb for tb in tracebacks if HANDLER_FRAME in tb), "")
    thread_error = next((e for e in outcome.thread_errors
                         if poison and e["delivery_id"] == poison.id), None)
    result: dict[str, Any] = {
        "message_id": outcome.poison_id,
        "state": poison.state if poison else "missing",
        "dead_reason": poison.dead_reason if poison else None,
        "crashes": poison.crashes if poison else 0,
        "causes": sorted({c.cause for c in charged}),
        "crash_ids": poison.crash_ids if poison else [],
        "quarantined_after_s": (round(poison.finished_at - outcome.injected_at, 3)
                                if poison and poison.state == "dead" and poison.finished_at
                                else None),
        "traceback_captured": bool(handler_tb) or bool(thread_error),
        "top_frame": top_frame(handler_tb, LIBRARY_PATHS) if handler_tb else None,
    }
    if thread_error is not None:
        result["thread_error_recorded"] = True
        result["thread_error"] = thread_error["detail"].strip().splitlines()[-1]
    return result


def _good(outcome: Outcome) -> dict[str, Any]:
    published = {(p.message_id, p.subscription): p.at for p in outcome.traffic.published}
    acked = [d for d in outcome.good if d.state == "acked"]
    latencies = sorted(d.finished_at - d.published_at for d in acked if d.finished_at)
    return {
        "published": len(published),
        "processed": len(acked),
        "lost": len(published) - len(acked),
        "dead": sum(1 for d in outcome.good if d.state == "dead"),
        "duplicated_deliveries": sum(max(0, d.attempt - 1) for d in acked),
        "charged_a_crash": sum(1 for d in outcome.good if d.crashes),
        "worst_publish_to_ack_s": round(latencies[-1], 3) if latencies else None,
        "median_publish_to_ack_s": round(latencies[len(latencies) // 2], 3) if latencies
        else None,
    }


def _restarts(outcome: Outcome) -> dict[str, int]:
    counts = {"worker": 0, "web": 0, "cron": 0}
    for crash in outcome.crashes:
        counts[crash.work_type] = counts.get(crash.work_type, 0) + 1
    return counts


def _failures(outcome: Outcome, report: Report) -> list[str]:
    failures = []
    if report.web["availability_pct"] < MIN_AVAILABILITY:
        failures.append(f"web availability {report.web['availability_pct']}% is under "
                        f"{MIN_AVAILABILITY}%")
    if report.good["lost"]:
        failures.append(f"{report.good['lost']} good message(s) were never processed")
    if report.good["charged_a_crash"] or report.good["dead"]:
        failures.append("good messages were charged a crash or went dead")
    if not report.poison["traceback_captured"]:
        failures.append("no traceback of the failing handler was captured")
    scenario = outcome.scenario
    if scenario.crashes:
        if report.poison["dead_reason"] != "poison pill":
            failures.append(f"the poison message was not quarantined (state "
                            f"{report.poison['state']})")
        elif scenario.cause and report.poison["causes"] != [scenario.cause]:
            failures.append(f"crash cause {report.poison['causes']}, expected {scenario.cause}")
        took = report.poison["quarantined_after_s"]
        if scenario.quarantine_within_s and took is not None and \
                took > scenario.quarantine_within_s:
            failures.append(f"quarantine took {took:.1f}s (aim: "
                            f"{scenario.quarantine_within_s:.0f}s)")
    elif report.poison["state"] != "acked":
        failures.append(f"the message should have been processed, it is {report.poison['state']}")
    return failures


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host.split('?', 1)[0]}"
    return url.split("?", 1)[0]


def render(report: Report) -> list[str]:
    """The report as lines for a person."""
    w, p, g = report.web, report.poison, report.good
    verdict = "PROMISE KEPT" if report.passed else "PROMISE BROKEN"
    lines = [
        f"drill {report.scenario} on {report.database}: {verdict}",
        f"  web        {w['requests']} requests, {w['succeeded']} ok, {w['failed']} failed, "
        f"availability {w['availability_pct']}%, longest gap without a success "
        f"{w['longest_gap_s']:.2f}s",
    ]
    if p["quarantined_after_s"] is not None:
        lines.append(f"  poison     quarantined {p['quarantined_after_s']:.2f}s after injection, "
                     f"after {p['crashes']} crash(es) ({', '.join(p['causes'])}); "
                     f"crash records {p['crash_ids']}")
    else:
        lines.append(f"  poison     state {p['state']}, {p['crashes']} crash(es)")
    if p.get("thread_error_recorded"):
        lines.append(f"  thread     recorded with its delivery: {p['thread_error']}")
    lines.append(f"  traceback  {'captured' if p['traceback_captured'] else 'MISSING'}"
                 + (f": {p['top_frame']}" if p["top_frame"] else ""))
    lines.append(f"  good msgs  {g['published']} published, {g['processed']} processed, "
                 f"{g['lost']} lost, {g['duplicated_deliveries']} duplicated deliveries, "
                 f"worst publish-to-ack {g['worst_publish_to_ack_s']}s")
    lines.append("  restarts   " + ", ".join(f"{k} {v}" for k, v in report.restarts.items()))
    lines += [f"  FAILED: {failure}" for failure in report.failures]
    return lines
