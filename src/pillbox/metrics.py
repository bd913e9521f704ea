"""Prometheus metrics, read from the database at scrape time.

Every number pillbox exports lives in the database, so any web process (or `pillbox dashboard`)
answers a scrape with the same, complete values however many processes and machines run:
no per-process counters to add up, nothing lost when a process dies.

Counters are all-time counts of rows that are never deleted (messages, acked deliveries,
events, crash records); gauges are the current state of each subscription.

When $PROMETHEUS_MULTIPROC_DIR is set, the per-process metrics written there (the app's own,
through prometheus-client's multiprocess mode) are exported alongside.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pillbox.broker import SQLBroker
from pillbox.messages import SubscriptionStats
from pillbox.worker.timings import LABELS

log = logging.getLogger("pillbox.metrics")

#: Event kinds exported per subscription, as pillbox_<name>_total.
SUBSCRIPTION_EVENTS = {
    "failed": ("pillbox_failed", "Handler exceptions (each one a nack), per subscription."),
    "crashed": ("pillbox_crashed", "Process deaths charged to a delivery of the subscription."),
    "dead": ("pillbox_dead", "Deliveries that went dead (max attempts or poison pill); a "
                             "replayed delivery that dies again counts again."),
}


class PillboxCollector(Collector):
    """Reads the broker on every collect(); never caches."""

    def __init__(self, broker: Callable[[], SQLBroker],
                 clock: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("pillbox_database_up",
                               "1 when the scrape could read the pillbox database, else 0.")
        try:
            broker = self.broker()
            now = self.clock()
            stats = broker.stats(now)
            totals = broker.totals()
        except Exception as exc:
            log.warning("metrics: cannot read the database: %s", str(exc)[:300])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        published = CounterMetricFamily(
            "pillbox_published", "Messages published, per topic.", labels=["topic"])
        for topic, count in sorted(totals.published.items()):
            published.add_metric([topic], count)
        yield published

        acked = CounterMetricFamily("pillbox_acked", "Deliveries acked, per subscription.",
                                    labels=["subscription", "topic"])
        for s in stats:
            acked.add_metric([s.name, s.topic], totals.acked.get(s.name, 0))
        yield acked

        for kind, (name, text) in SUBSCRIPTION_EVENTS.items():
            family = CounterMetricFamily(name, text, labels=["subscription", "topic"])
            for s in stats:
                family.add_metric([s.name, s.topic], totals.events.get((kind, s.name), 0))
            yield family

        yield handler_durations(stats, totals.durations)

        gauges: list[tuple[str, str, Callable[[SubscriptionStats], float]]] = [
            ("pillbox_backlog", "Deliveries waiting (available, including delayed and retrying).",
             lambda s: s.backlog),
            ("pillbox_in_flight", "Deliveries leased to a worker right now.",
             lambda s: s.in_flight),
            ("pillbox_dead_messages", "Deliveries dead right now (replayable, droppable).",
             lambda s: s.dead),
            ("pillbox_oldest_unacked_age_seconds",
             "Age of the oldest delivery not yet acked or dead (0 when there is none).",
             lambda s: s.oldest_unacked_age_s or 0.0),
            ("pillbox_paused", "1 when the subscription is paused.", lambda s: int(s.paused)),
        ]
        for name, text, value in gauges:
            gauge = GaugeMetricFamily(name, text, labels=["subscription", "topic"])
            for s in stats:
                gauge.add_metric([s.name, s.topic], value(s))
            yield gauge

        crashes = CounterMetricFamily(
            "pillbox_process_crashes", "Child process deaths recorded by the supervisor, per "
            "work type and cause.", labels=["work_type", "cause"])
        for (work_type, cause), count in sorted(totals.crashes.items()):
            crashes.add_metric([work_type, cause], count)
        yield crashes

        web = CounterMetricFamily(
            "pillbox_web_errors", "Unhandled exceptions in the web app, each answered with a "
            "500 when no response had started.")
        web.add_metric([], totals.events.get(("web_error", None), 0))
        yield web

        other = CounterMetricFamily(
            "pillbox_errors", "Other recorded errors (e.g. thread_error: an exception in a "
            "thread the app or a library started), per kind.", labels=["kind"])
        known = {*SUBSCRIPTION_EVENTS, "web_error"}
        by_kind: dict[str, int] = {}
        for (kind, _sub), count in totals.events.items():
            if kind not in known:
                by_kind[kind] = by_kind.get(kind, 0) + count
        for kind, count in sorted(by_kind.items()):
            other.add_metric([kind], count)
        yield other

        duration = GaugeMetricFamily("pillbox_scrape_duration_seconds",
                                     "Time this scrape spent reading the database.")
        duration.add_metric([], time.perf_counter() - started)
        yield duration


def handler_durations(stats: list[SubscriptionStats],
                      durations: dict[str, dict[str, tuple[int, float]]]) -> Metric:
    """The stored buckets as one cumulative histogram per subscription. Bounds the stored
    rows have and this version does not (an older or newer pillbox wrote them) fold into the
    next bound up, so the count and sum stay whole."""
    family = HistogramMetricFamily(
        "pillbox_handler_duration_seconds", "Wall time of handler runs that returned or "
        "raised (not those that crashed their process), per subscription. Workers add "
        "theirs every few seconds.", labels=["subscription", "topic"])
    known = {label: index for index, label in enumerate(LABELS)}
    for s in stats:
        counts = [0] * len(LABELS)
        total = 0.0
        for le, (n, seconds) in durations.get(s.name, {}).items():
            counts[known.get(le, _fold(le))] += n
            total += seconds
        cumulative, running = [], 0
        for label, n in zip(LABELS, counts, strict=True):
            running += n
            cumulative.append((label, running))
        family.add_metric([s.name, s.topic], cumulative, sum_value=total)
    return family


def _fold(le: str) -> int:
    """Index of the smallest known bound at or above `le` (+Inf when unparsable)."""
    try:
        bound = float(le)
    except ValueError:
        return len(LABELS) - 1
    for index, label in enumerate(LABELS):
        if float(label) >= bound:
            return index
    return len(LABELS) - 1


class Exposition:
    """The text a scrape of /_pillbox/metrics gets."""

    def __init__(self, broker: Callable[[], SQLBroker],
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PillboxCollector(broker, clock))
        multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if multiproc_dir and os.path.isdir(multiproc_dir):
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.registry, path=multiproc_dir)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
