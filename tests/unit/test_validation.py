"""Bad declarations and bad input are refused when they happen, with the problem named."""

from __future__ import annotations

import pytest

from pillbox import App, ConfigError, CronError, PayloadNotJSON, UnknownTopic


@pytest.fixture
def app(tmp_path):
    app = App("validation", database=f"sqlite:///{tmp_path}/v.db")
    yield app
    app.close()


def handler(message):  # pragma: no cover - never delivered here
    pass


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"concurrency": 1_000_000}, "over the limit of 256"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"timeout": float("inf")}, "timeout must be a finite number"),
        ({"max_backoff": float("nan")}, "max_backoff must be a finite number"),
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1"),
        ({"memory_limit": "lots"}, "is not a size like"),
        ({"memory_limit": "1KB"}, "below 32 MiB"),
        ({"name": ""}, "must not be empty"),
        ({"name": "cron.nightly"}, "reserved for crons"),
    ],
)
def test_bad_subscription_options_are_refused_at_declaration(app, options, complaint):
    with pytest.raises(ConfigError, match=complaint):
        app.subscribe("jobs", **options)(handler)
    assert app.subscriptions == {}


def test_a_handler_must_take_the_message_and_nothing_else(app):
    def two(message, extra):  # pragma: no cover
        pass

    with pytest.raises(ConfigError, match=r"must take one argument.*\(message, extra\)"):
        app.subscribe("jobs", name="two")(two)
    with pytest.raises(ConfigError, match=r"must take one argument.*\(\)"):
        app.subscribe("jobs", name="none")(lambda: None)
    assert app.subscriptions == {}
    app.subscribe("jobs", name="with-default")(lambda message, retries=3: None)

    async def handle(message):  # pragma: no cover
        pass

    app.subscribe("jobs", name="async")(handle)
    assert sorted(app.subscriptions) == ["async", "with-default"]


def test_handlers_without_a_name_or_that_never_run_their_body_are_refused(app):
    import functools

    def two(message, extra):  # pragma: no cover
        pass

    with pytest.raises(ConfigError, match=r"has no __name__.*pass name="):
        app.subscribe("jobs")(functools.partial(two, extra=1))
    with pytest.raises(ConfigError, match="5 is not callable"):
        app.subscribe("jobs")(5)

    async def stream(message):  # pragma: no cover
        yield message

    with pytest.raises(ConfigError, match="generator function"):
        app.subscribe("jobs")(stream)
    assert app.subscriptions == {}
    app.subscribe("jobs", name="partial")(functools.partial(two, extra=1))
    assert list(app.subscriptions) == ["partial"]
    # crons too
    with pytest.raises(ConfigError, match="has no __name__"):
        app.cron("* * * * *")(functools.partial(two, None, None))
    with pytest.raises(ConfigError, match="generator function"):
        app.cron("* * * * *", name="stream")(stream)
    assert app.crons == {}


def test_a_cron_function_must_take_at_most_one_argument(app):
    def two(a, b):  # pragma: no cover
        pass

    with pytest.raises(CronError, match=r"cron 'two'.*signature is \(a, b\)"):
        app.cron("* * * * *")(two)
    app.cron("* * * * *", name="takes-message")(lambda message: None)
    app.cron("* * * * *", name="takes-nothing")(lambda: None)


def test_bad_publish_arguments_store_nothing(app):
    app.subscribe("jobs")(handler)
    for delay in (float("nan"), float("inf"), -1, True):
        with pytest.raises(ConfigError, match="delay must be a finite number"):
            app.publish("jobs", {}, delay=delay)
    with pytest.raises(PayloadNotJSON, match="not valid Unicode"):
        app.publish("jobs", {"text": "\ud800"})
    assert app.broker.deliveries(subscription="jobs") == []


def test_max_payload_bytes_must_be_positive():
    with pytest.raises(ConfigError, match="max_payload_bytes must be a positive integer"):
        App("bad", max_payload_bytes=-1)


def test_long_lists_of_declared_names_say_they_were_cut(app):
    for n in range(12):
        app.topic(f"topic-{n:02d}")
    with pytest.raises(UnknownTopic, match=r"\.\.\. and 2 more\)$"):
        app.publish("nope", {})


def test_an_in_memory_sqlite_database_still_opens():
    """Remembering the database file's identity once made ':memory:' a FileNotFoundError."""
    app = App("memory", database="sqlite:///:memory:")
    app.subscribe("jobs", name="jobs")(handler)
    try:
        assert app.publish("jobs", {"n": 1})
        assert app.broker.file_problem() is None
    finally:
        app.close()
