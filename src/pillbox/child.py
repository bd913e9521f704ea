"""Entry point of every child process of `pillbox run`:
`python -m pillbox.child ROLE APP_PATH`.

Boot, in order: die with the supervisor (PR_SET_PDEATHSIG), arm the black box (faulthandler
to a per-process file, exception hooks), import the app, run the role. The environment
carries PILLBOX_EVENTS_FD (the pipe to the supervisor), PILLBOX_RUN_DIR and PILLBOX_CHILD.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys

from pillbox.errors import AppImportError, PillboxError
from pillbox.forensics import blackbox
from pillbox.forensics.recorder import record_error
from pillbox.loader import load_app
from pillbox.protocol import Reporter

EX_CONFIG = 78
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
ROLES = ("worker", "lane", "web", "cron", "inspect", "standby")


def main(argv: list[str]) -> int:
    role, app_path = argv[0], argv[1]
    if role not in ROLES:
        print(f"pillbox child: unknown role {role!r}", file=sys.stderr)
        return 2
    _die_with_parent()
    name_process("booting" if role == "standby" else role)  # pb-standby once it stands by
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    fd = os.environ.get("PILLBOX_EVENTS_FD")
    reporter = Reporter(int(fd) if fd else None)
    try:
        app = load_app(app_path)
    except AppImportError as exc:
        print(f"pillbox: {exc}", file=sys.stderr)
        return EX_CONFIG
    if role == "inspect":
        return _inspect(app, reporter)
    run_dir = os.environ.get("PILLBOX_RUN_DIR", ".")
    blackbox.install(run_dir, os.getpid(),
                     lambda kind, detail, ctx: record_error(app.broker, kind, detail, ctx))
    if role == "standby":
        role = _wait_for_role(app, reporter)
        name_process(role)
    try:
        return _run(role, app, reporter)
    except PillboxError as exc:
        print(f"pillbox: {exc}", file=sys.stderr)
        return EX_CONFIG


def _run(role: str, app: object, reporter: Reporter) -> int:
    from pillbox.app import App

    assert isinstance(app, App)
    if role in ("worker", "lane"):
        from pillbox.worker.consumer import Consumer

        return Consumer(app, reporter, lane=role == "lane").run()
    if role == "web":
        from pillbox.web.server import serve

        return serve(app, reporter, int(os.environ["PILLBOX_SOCKET_FD"]))
    from pillbox.scheduler import Scheduler

    return Scheduler(app, reporter).run()


def _wait_for_role(app: object, reporter: Reporter) -> str:
    """A standby child: booted (app imported, database open), it waits for the supervisor to
    hand it the role of a worker that just died, so a restart costs milliseconds."""
    from pillbox.app import App

    assert isinstance(app, App)
    app.broker  # noqa: B018 - open now, not after the go
    import pillbox.worker.consumer  # noqa: F401 - import now, not after the go

    reporter.send("standby")
    name_process("standby")
    fd = int(os.environ["PILLBOX_STANDBY_FD"])
    with os.fdopen(fd, "rb", buffering=0) as go:
        line = go.readline().decode().strip()
    if not line:  # the supervisor closed the pipe: it is stopping
        sys.exit(0)
    role = line.split()[-1]
    os.environ["PILLBOX_CHILD"] = line.split()[0]
    return role


def _inspect(app: object, reporter: Reporter) -> int:
    """Tell the supervisor what the app declares (it never imports user code itself), after
    creating the schema and registering subscriptions once."""
    from pillbox.app import App

    assert isinstance(app, App)
    try:
        if app.web is not None:
            from pillbox.web.resolve import resolve_web

            resolve_web(app)
        app.broker  # noqa: B018 - opens, migrates and registers
    except PillboxError as exc:
        print(f"pillbox: {exc}", file=sys.stderr)
        return EX_CONFIG
    spec = {
        "name": app.name,
        "database": app.database,
        "web": app.web is not None,
        "crons": sorted(app.crons),
        "subscriptions": {
            name: {"topic": sub.topic, "concurrency": sub.concurrency, "timeout_s": sub.timeout_s,
                   "max_attempts": sub.max_attempts, "max_crashes": sub.max_crashes,
                   "memory_limit_bytes": sub.memory_limit_bytes}
            for name, sub in app.subscriptions.items()
        },
    }
    target = os.environ.get("PILLBOX_SPEC_FILE")
    if target:
        with open(target, "w") as out:
            json.dump(spec, out)
    else:
        print(json.dumps(spec), flush=True)
    reporter.send("ready")
    return 0


def name_process(role: str) -> None:
    """Linux: name the process "pb-<role>" so ps, top and tests can tell children apart (a
    promoted standby keeps its command line but takes its new role's name)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, f"pb-{role}".encode()[:15])
    except (OSError, AttributeError):
        pass


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the supervisor dies, so no child is ever orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        sys.exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
