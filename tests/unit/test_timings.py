"""Handler durations: bucketed in the worker, summed in the database, exported as one
cumulative Prometheus histogram per subscription."""

from __future__ import annotations

import pytest

from pillbox.messages import SubscriptionStats
from pillbox.metrics import handler_durations
from pillbox.worker.timings import LABELS, Timings


def stats(name: str) -> SubscriptionStats:
    return SubscriptionStats(name=name, topic="t", paused=False, backlog=0, in_flight=0,
                             oldest_unacked_age_s=None, dead=0, acked_5m=0, failed_5m=0,
                             crashed_5m=0, acked_1h=0, failed_1h=0, crashed_1h=0, dead_1h=0)


def test_a_duration_lands_in_the_smallest_bucket_that_holds_it() -> None:
    timings = Timings()
    for seconds in (0.001, 0.005, 0.0051, 0.3, 400.0):
        timings.observe("a", seconds)
    timings.observe("b", 0.02)
    taken = {(sub, le): (n, s) for sub, le, n, s in timings.take()}
    assert taken == {("a", "0.005"): (2, pytest.approx(0.006)),
                     ("a", "0.01"): (1, pytest.approx(0.0051)),
                     ("a", "0.5"): (1, pytest.approx(0.3)),
                     ("a", "+Inf"): (1, pytest.approx(400.0)),
                     ("b", "0.025"): (1, pytest.approx(0.02))}
    assert timings.take() == []


def test_observations_that_could_not_be_saved_are_kept_for_the_next_flush() -> None:
    timings = Timings()
    timings.observe("a", 0.2)
    taken = timings.take()
    timings.observe("a", 0.2)
    timings.give_back(taken)
    assert timings.take() == [("a", "0.25", 2, pytest.approx(0.4))]


def test_the_exported_histogram_is_cumulative_with_count_and_sum() -> None:
    family = handler_durations([stats("a"), stats("idle")], {
        "a": {"0.005": (2, 0.006), "0.5": (1, 0.3), "+Inf": (1, 400.0)},
        "gone": {"0.1": (5, 0.2)},  # a subscription no longer declared is not exported
    })
    samples = {(s.name, s.labels["subscription"], s.labels.get("le")): s.value
               for s in family.samples}
    assert samples[("pillbox_handler_duration_seconds_bucket", "a", "0.005")] == 2
    assert samples[("pillbox_handler_duration_seconds_bucket", "a", "0.25")] == 2
    assert samples[("pillbox_handler_duration_seconds_bucket", "a", "0.5")] == 3
    assert samples[("pillbox_handler_duration_seconds_bucket", "a", "+Inf")] == 4
    assert samples[("pillbox_handler_duration_seconds_count", "a", None)] == 4
    assert samples[("pillbox_handler_duration_seconds_sum", "a", None)] == pytest.approx(400.306)
    assert samples[("pillbox_handler_duration_seconds_count", "idle", None)] == 0
    assert not any(sub == "gone" for _, sub, _ in samples)
    assert [le for name, sub, le in samples
            if sub == "a" and name.endswith("_bucket")] == list(LABELS)


def test_bounds_this_version_does_not_know_fold_into_the_next_one_up() -> None:
    family = handler_durations([stats("a")], {"a": {"0.2": (3, 0.5), "9000": (1, 9000.0),
                                                    "junk": (1, 1.0)}})
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets["0.1"] == 0 and buckets["0.25"] == 3
    assert buckets["300.0"] == 3 and buckets["+Inf"] == 5
