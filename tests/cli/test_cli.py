"""The operator CLI, run as a real subprocess against real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pillbox.broker.base import CULPRIT
from pillbox.messages import CrashRecord

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def pillbox(*args: str, db: str | None = None, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}),
                "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(FIXTURES.parents[1]),
                                               (env or {}).get("PYTHONPATH", ""),
                                               os.environ.get("PYTHONPATH", "")])}
    if db is not None:
        full_env["PILLBOX_DATABASE_URL"] = db
        full_env["CRASHAPP_DATABASE"] = db
    return subprocess.run([sys.executable, "-m", "pillbox", *args], capture_output=True,
                          text=True, env=full_env, input=stdin, timeout=60)


@pytest.fixture
def seeded(make_app):
    """An app with one acked, one waiting and one poison-pill delivery."""
    app = make_app("cli")

    @app.subscribe("jobs", name="jobs", max_crashes=1)
    def jobs(message):  # pragma: no cover - never run here
        pass

    broker = app.broker
    app.publish("jobs", {"n": 1})
    lease = broker.pull("jobs", "test", 1, 30, time.time())[0]
    broker.ack(lease, time.time())
    app.publish("jobs", {"n": 2, "html": "<script>alert(1)</script>"})
    poison_id = app.publish("jobs", {"mode": "segfault"})
    leases = broker.pull("jobs", "test", 5, 30, time.time())
    lease = next(x for x in leases if x.message.id == poison_id)
    record = CrashRecord(at=time.time(), work_type="worker", pid=1, exit_code=None, signal=11,
                         cause="segfault", in_flight=[{"delivery_id": lease.delivery_id}],
                         traceback='Current thread 0x1 (most recent call first):\n  File '
                                   '"app.py", line 3 in handler', peak_rss_bytes=1,
                         log_tail="", summary="segfault in test")
    crash_id = broker.record_crash(record, [(lease.delivery_id, lease.token, CULPRIT)])
    broker.release([(x.delivery_id, x.token) for x in leases if x is not lease], time.time())
    return app, lease.delivery_id, crash_id, poison_id


def test_status_json_shape_and_attention_exit_code(seeded, db_url):
    _app, _poison, _crash, _ = seeded
    done = pillbox("status", "--json", db=db_url)
    assert done.returncode == 3, done.stderr  # a dead message in the last hour
    data = json.loads(done.stdout)
    (sub,) = data["subscriptions"]
    assert sub["name"] == "jobs" and sub["backlog"] == 1 and sub["dead"] == 1
    assert sub["in_flight"] == 0 and sub["paused"] is False
    assert data["work_types"]["worker"]["crashes_1h"] == 1
    assert data["attention"] and "jobs" in data["attention"][0]
    assert data["defaults"]["max_crashes"] == 3
    human = pillbox("status", db=db_url)
    assert "jobs" in human.stdout and "attention" in human.stdout


def test_crashes_and_dead_commands(seeded, db_url):
    _app, poison, crash_id, poison_id = seeded
    listed = json.loads(pillbox("crashes", "--json", db=db_url).stdout)
    assert [c["id"] for c in listed["crashes"]] == [crash_id]
    assert listed["total"] == 1 and listed["truncated"] is False
    shown = pillbox("crashes", "show", str(crash_id), db=db_url)
    assert shown.returncode == 0 and "app.py" in shown.stdout and "segfault" in shown.stdout
    assert "no crash record #999" in pillbox("crashes", "show", "999", db=db_url).stderr
    dead = json.loads(pillbox("dead", "list", "--json", db=db_url).stdout)
    assert [(d["id"], d["dead_reason"]) for d in dead] == [(poison, "poison pill")]
    one = json.loads(pillbox("dead", "show", str(poison), "--json", db=db_url).stdout)
    assert one["message_id"] == poison_id and one["crash_ids"] == [crash_id]
    replayed = pillbox("dead", "replay", str(poison), db=db_url)
    assert replayed.returncode == 0 and "replayed 1" in replayed.stdout
    again = pillbox("dead", "replay", str(poison), db=db_url)
    assert again.returncode == 1 and "not dead" in again.stderr
    assert pillbox("dead", "drop", str(poison), "--yes", db=db_url).returncode == 1


def test_unknown_subscription_pause_resume(seeded, db_url):
    app, *_ = seeded
    bad = pillbox("pause", "jbos", db=db_url)
    assert bad.returncode == 1 and "unknown subscription 'jbos'; did you mean 'jobs'" in bad.stderr
    assert pillbox("pause", "jobs", db=db_url).returncode == 0
    assert app.broker.paused() == {"jobs"}
    assert app.broker.pull("jobs", "t", 10, 30, time.time()) == []
    assert pillbox("resume", "jobs", db=db_url).returncode == 0
    assert app.broker.paused() == set()


def test_purge_is_targeted_counted_and_confirmed(seeded, db_url):
    app, *_ = seeded
    refused = pillbox("purge", "jobs", db=db_url)
    assert refused.returncode == 2 and "--before" in refused.stderr
    dry = pillbox("purge", "jobs", "--all", "--dry-run", db=db_url)
    assert "would purge 2" in dry.stdout  # one waiting + one dead; the acked one never
    assert pillbox("purge", "jobs", "--all", stdin="n\n", db=db_url).returncode == 1
    assert len(app.broker.deliveries(subscription="jobs")) == 3
    bad_time = pillbox("purge", "jobs", "--before", "yesterday-ish", db=db_url)
    assert bad_time.returncode == 2 and "neither an ISO time" in bad_time.stderr
    none = pillbox("purge", "jobs", "--before", "2000-01-01T00:00", "--yes", db=db_url)
    assert "nothing to purge" in none.stdout
    done = pillbox("purge", "jobs", "--before", "1s", "--yes", db=db_url)
    assert "purged 2" in done.stdout
    assert [d.state for d in app.broker.deliveries(subscription="jobs")] == ["acked"]


def test_publish_errors_and_success(db_url):
    ok = pillbox("publish", "crashapp:app", "jobs", '{"mode": "ok"}', db=db_url)
    assert ok.returncode == 0 and len(ok.stdout.strip()) == 32
    typo = pillbox("publish", "crashapp:app", "jbos", "{}", db=db_url)
    assert typo.returncode == 1 and "did you mean 'jobs'" in typo.stderr
    not_json = pillbox("publish", "crashapp:app", "jobs", "{nope", db=db_url)
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr
    missing = pillbox("publish", "no_such_module:app", "jobs", "{}", db=db_url)
    assert missing.returncode == 1 and "no module named 'no_such_module'" in missing.stderr


def test_an_app_that_does_not_import_is_one_line_or_the_app_s_own_traceback(tmp_path):
    """A typo in the module name printed importlib's traceback, and `run` said so twice."""
    (tmp_path / "broken.py").write_text("import not_installed_anywhere\n")
    db = f"sqlite:///{tmp_path}/x.db"
    for command in (["run", "tpyo:app"], ["status", "--app", "tpyo:app"]):
        done = pillbox(*command, db=db)
        assert done.returncode == 1, command
        assert done.stderr.strip().splitlines() == [
            "Error: cannot import 'tpyo' (from 'tpyo:app'): no module named 'tpyo' in "
            f"{os.getcwd()} or on PYTHONPATH; run from the app's folder"], done.stderr
    done = pillbox("run", "broken:app", db=db, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.count("cannot import 'broken'") == 1, done.stderr
    assert 'broken.py", line 1, in <module>' in done.stderr
    assert "No module named 'not_installed_anywhere'" in done.stderr
    assert "importlib" not in done.stderr


def test_procfile_and_migrate(db_url):
    procfile = pillbox("procfile", "crashapp:app", db=db_url)
    assert procfile.stdout.splitlines() == ["worker: pillbox run crashapp:app --only worker"]
    assert pillbox("migrate", db=db_url).stdout.strip() == "schema up to date"


def test_a_database_that_is_down_is_named_without_its_password():
    done = pillbox("status", db="postgresql://bob:s3cret@127.0.0.1:1/nope")
    assert done.returncode == 1
    assert "127.0.0.1:1/nope" in done.stderr and "s3cret" not in done.stderr


def test_run_rejects_bad_input(tmp_path):
    unknown = pillbox("run", "crashapp:app", "--only", "workers", db=f"sqlite:///{tmp_path}/x.db")
    assert unknown.returncode == 2 and "unknown work type(s) workers" in unknown.stderr
    broken = pillbox("run", "no_such_module:app", db=f"sqlite:///{tmp_path}/x.db")
    assert broken.returncode == 1 and "no module named 'no_such_module'" in broken.stderr


def test_status_with_the_app_shows_its_crons(tmp_path):
    db = f"sqlite:///{tmp_path}/crons.db"
    before = time.time()  # the next tick of "* * * * *" may already be past when it returns
    done = pillbox("status", "--json", "--app", "examples.incidents.app:app", db=db)
    assert done.returncode == 0, done.stderr
    (cron,) = json.loads(done.stdout)["crons"]
    assert cron["name"] == "nudges" and cron["schedule"] == "* * * * *"
    assert cron["catch_up"] == "latest" and cron["overlap"] is False
    assert cron["last_tick"] is None and before < cron["next_tick"] <= before + 61


def test_read_commands_never_create_a_missing_sqlite_database(tmp_path):
    target = tmp_path / "nowhere.db"
    done = pillbox("status", db=f"sqlite:///{target}")
    assert done.returncode == 1 and "no pillbox database at" in done.stderr
    assert not target.exists()
    assert pillbox("migrate", db=f"sqlite:///{target}").returncode == 0
    assert target.exists()


@pytest.mark.postgres
def test_read_commands_never_create_pillbox_tables_in_a_postgres_database(pg_url):
    """They once created all ten tables in whatever database they were pointed at, then
    reported it healthy and empty."""
    import psycopg

    def tables() -> int:
        with psycopg.connect(pg_url) as conn:
            return conn.execute("SELECT count(*) FROM information_schema.tables "
                                "WHERE table_schema = current_schema()").fetchone()[0]

    for command in (["status"], ["crashes"], ["dead", "list"]):
        done = pillbox(*command, db=pg_url)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "no pillbox tables in PostgreSQL at 127.0.0.1:5432/" in done.stderr, command
        assert "pillbox migrate" in done.stderr
    assert tables() == 0
    assert pillbox("migrate", db=pg_url).returncode == 0
    assert tables() > 0
    assert pillbox("status", db=pg_url).returncode == 0


def test_a_port_out_of_range_is_a_usage_error(tmp_path):
    done = pillbox("run", "crashapp:app", "--bind", "127.0.0.1:99999",
                   db=f"sqlite:///{tmp_path}/x.db")
    assert done.returncode == 2 and "port 0-65535" in done.stderr


TOO_BIG = "99999999999999999999999"  # > 2**63-1: SQLite cannot even bind it


def test_dead_replay_of_a_repeated_id_replays_it_once(seeded, db_url):
    _app, poison, *_ = seeded
    done = pillbox("dead", "replay", str(poison), str(poison), db=db_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "replayed 1 delivery(ies)"
    assert "not dead" not in done.stderr


def test_ids_beyond_64_bits_are_unknown_not_a_traceback(seeded, db_url):
    _app, poison, *_ = seeded
    for args, complaint in ((["dead", "show", TOO_BIG], f"no delivery #{TOO_BIG}"),
                            (["crashes", "show", TOO_BIG], f"no crash record #{TOO_BIG}"),
                            (["dead", "replay", TOO_BIG], f"not dead (or unknown): {TOO_BIG}"),
                            (["dead", "drop", TOO_BIG], f"not dead (or unknown): {TOO_BIG}")):
        done = pillbox(*args, db=db_url)
        assert done.returncode == 1, args
        assert complaint in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert pillbox("dead", "show", str(poison), db=db_url).returncode == 0


def test_dead_drop_checks_first_and_asks_only_about_dead_deliveries(seeded, db_url):
    app, poison, *_ = seeded
    unknown = pillbox("dead", "drop", "999", stdin="", db=db_url)
    assert unknown.returncode == 1
    assert "not dead (or unknown): 999" in unknown.stderr
    assert "delete" not in unknown.stdout + unknown.stderr  # nothing to confirm
    refused = pillbox("dead", "drop", str(poison), str(poison), "999", stdin="n\n", db=db_url)
    assert refused.returncode == 1
    assert "delete 1 dead delivery(ies) for good?" in refused.stdout
    assert "left alone: 999" in refused.stderr
    assert app.broker.delivery(poison).state == "dead"
    dropped = pillbox("dead", "drop", str(poison), "999", stdin="y\n", db=db_url)
    assert dropped.returncode == 1
    assert "delete 1 dead delivery(ies) for good?" in dropped.stdout
    assert "dropped 1 delivery(ies)" in dropped.stdout
    assert "not dead (or unknown): 999" in dropped.stderr
    assert app.broker.delivery(poison) is None


def test_crashes_says_when_the_list_is_cut_at_the_limit(seeded, db_url):
    app, _poison, first_crash, _ = seeded
    for pid in range(4):
        app.broker.record_crash(CrashRecord(
            at=time.time(), work_type="web", pid=pid, exit_code=1, signal=None, cause="exit",
            in_flight=[], traceback="", peak_rss_bytes=1, log_tail="", summary="exit"), [])
    cut = pillbox("crashes", "--limit", "3", db=db_url)
    assert cut.returncode == 0, cut.stderr
    assert "showing the newest 3 of 5 (use --limit)" in cut.stdout
    whole = pillbox("crashes", "--limit", "5", db=db_url)
    assert whole.returncode == 0 and "showing" not in whole.stdout
    assert str(first_crash) in whole.stdout
    data = json.loads(pillbox("crashes", "--limit", "3", "--json", db=db_url).stdout)
    assert len(data["crashes"]) == 3 and data["total"] == 5 and data["truncated"] is True
    bad = pillbox("crashes", "--limit", "0", db=db_url)
    assert bad.returncode == 2 and "--limit" in bad.stderr


def test_database_and_app_together_on_the_command_line_are_refused(seeded, db_url, tmp_path):
    other = f"sqlite:///{tmp_path}/other.db"
    assert pillbox("migrate", "--database", other).returncode == 0
    both = pillbox("status", "--app", "crashapp:app", "--database", other, db=db_url)
    assert both.returncode == 2
    assert "--database and --app both say which database to use" in both.stderr
    # one on the command line, the other from the environment: the command line wins
    by_app = pillbox("status", "--json", "--app", "crashapp:app",
                     env={"PILLBOX_DATABASE_URL": other, "CRASHAPP_DATABASE": db_url})
    assert by_app.returncode == 3, by_app.stderr  # the seeded database: a dead message
    assert "jobs" in [s["name"] for s in json.loads(by_app.stdout)["subscriptions"]]
    by_database = pillbox("status", "--json", "--database", other, db=db_url,
                          env={"PILLBOX_APP": "crashapp:app"})
    assert by_database.returncode == 0, by_database.stderr
    assert json.loads(by_database.stdout)["subscriptions"] == []
