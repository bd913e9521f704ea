"""Whatever shape a handler has, its body runs or the delivery fails: an async handler behind
a sync-looking wrapper, or an object with `async def __call__`, was once acked with its body
never run (the coroutine was dropped with a RuntimeWarning)."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from pillbox import App
from pillbox.errors import ConfigError
from pillbox.protocol import Reporter
from pillbox.worker.executor import Executor, InFlight

ran: list[str] = []


def logged(func):
    @functools.wraps(func)
    def wrapper(message):
        return func(message)

    return wrapper


@logged
async def wrapped_async(message):
    await asyncio.sleep(0)
    ran.append("wrapped")


class AsyncCall:
    __name__ = "async-call"

    async def __call__(self, message):
        ran.append("async-call")


async def send_later(message):
    await asyncio.sleep(0)
    ran.append("sent")


async def forgot_await(message):
    return send_later(message)  # the `await` forgotten: the coroutine is returned


class GeneratorCall:
    __name__ = "generator-call"

    def __call__(self, message):
        ran.append("never")
        yield message


@pytest.fixture
def app(tmp_path):
    app = App("shapes", database=f"sqlite:///{tmp_path}/shapes.db")
    app.subscribe("jobs", name="wrapped")(wrapped_async)
    app.subscribe("jobs", name="async-call")(AsyncCall())
    app.subscribe("jobs", name="generator-call", max_attempts=1)(GeneratorCall())
    app.subscribe("jobs", name="forgot-await")(forgot_await)

    @app.cron("0 3 * * *", name="keyword-only")
    def keyword_only(*, message=None):
        ran.append(f"keyword-only {message}")

    @app.cron("0 4 * * *", name="cron-forgot-await")
    async def cron_forgot_await():
        return send_later(None)

    yield app
    app.close()


def run_one(app: App, subscription: str) -> bool:
    broker = app.broker
    (lease,) = broker.pull(subscription, "w1", 1, 30.0, time.time())
    executor = Executor(broker, Reporter(None), InFlight())
    loop = asyncio.new_event_loop()
    try:
        succeeded = executor.run(app.subscriptions[subscription], lease, loop)
    finally:
        loop.close()
    if succeeded:
        assert broker.ack_many([lease], time.time()) == [True]
    return succeeded


def test_awaitables_are_awaited_and_generators_fail(app):
    ran.clear()
    message_id = app.publish("jobs", {"n": 1})
    assert run_one(app, "wrapped") and run_one(app, "async-call")
    assert ran == ["wrapped", "async-call"]
    assert not run_one(app, "generator-call")
    (dead,) = app.broker.deliveries(message_id=message_id, state="dead")
    assert dead.subscription == "generator-call"
    assert "returned a generator" in (app.broker.delivery(dead.id).last_error or "")
    assert ran == ["wrapped", "async-call"]


def test_a_coroutine_returned_by_an_async_handler_or_cron_is_awaited(app):
    """`async def h(m): return send(m)` was acked with send's body never run."""
    ran.clear()
    app.publish("jobs", {"n": 1})
    assert run_one(app, "forgot-await")
    assert ran == ["sent"]
    app.publish("cron.cron-forgot-await", {"tick": 1})
    assert run_one(app, "cron.cron-forgot-await")
    assert ran == ["sent", "sent"]


def test_a_cron_with_a_keyword_only_parameter_is_called_without_the_message(app):
    """It was accepted, then every tick failed: it was called with the message positionally."""
    ran.clear()
    app.publish("cron.keyword-only", {"tick": 1})
    assert run_one(app, "cron.keyword-only")
    assert ran == ["keyword-only None"]


def test_a_cron_that_requires_a_keyword_argument_is_refused(app):
    with pytest.raises(ConfigError, match=r"cron 'needs-kw'.*signature is \(\*, when\)"):
        app.cron("0 5 * * *", name="needs-kw")(lambda *, when: None)
