"""The example incident-response service.

Run it:   pillbox run examples.incidents.app:app
Drill it: pillbox drill

- web (FastAPI): declare incidents, post updates, add members to an incident's channel,
  a public status page at /status;
- subscription `welcome-message` on `member-joined`: compose and store a welcome message
  (crashes its process natively when the org has no welcome template: the original outage);
- subscription `status-page` on `incident-updated`: re-render the status page;
- cron `nudges` (every minute): incidents with no update for NUDGE_AFTER_S get a nudge.
"""

from __future__ import annotations

import html
import json
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from examples.incidents import faults
from examples.incidents.render import render_welcome
from examples.incidents.store import Store
from pillbox import App, Message

NUDGE_AFTER_S = float(os.environ.get("INCIDENTS_NUDGE_AFTER_S", "900"))

app = App("incidents")
store = Store(app.database)
web = FastAPI(title="incidents")
app.web = web


# -- web ---------------------------------------------------------------------------------
class OrgIn(BaseModel):
    name: str
    settings: dict[str, Any] = {}


class IncidentIn(BaseModel):
    org_id: int
    title: str


class UpdateIn(BaseModel):
    body: str


class MemberIn(BaseModel):
    username: str


@web.on_event("startup")
def _schema() -> None:
    store.create_schema()


@web.post("/orgs", status_code=201)
def create_org(org: OrgIn) -> dict[str, Any]:
    with store.transaction() as conn:
        store.q(conn, "INSERT INTO ex_orgs (name, settings) VALUES (?, ?)",
                (org.name, json.dumps(org.settings)))
        (org_id,) = store.q(conn, "SELECT max(id) FROM ex_orgs")[0]
    return {"id": org_id, "name": org.name}


@web.post("/incidents", status_code=201)
def declare(incident: IncidentIn) -> dict[str, Any]:
    now = time.time()
    with store.transaction() as conn:
        if not store.q(conn, "SELECT id FROM ex_orgs WHERE id = ?", (incident.org_id,)):
            raise HTTPException(404, f"no org {incident.org_id}")
        store.q(conn, "INSERT INTO ex_incidents (org_id, title, status, created_at, updated_at) "
                "VALUES (?, ?, 'open', ?, ?)", (incident.org_id, incident.title, now, now))
        (incident_id,) = store.q(conn, "SELECT max(id) FROM ex_incidents")[0]
        app.publish("incident-updated", {"incident_id": incident_id}, conn=conn)
    return {"id": incident_id, "title": incident.title}


@web.get("/incidents")
def list_incidents() -> list[dict[str, Any]]:
    with store.transaction() as conn:
        rows = store.q(conn, "SELECT id, org_id, title, status, updated_at FROM ex_incidents "
                       "ORDER BY id DESC LIMIT 100")
    return [dict(zip(("id", "org_id", "title", "status", "updated_at"), r, strict=True))
            for r in rows]


@web.post("/incidents/{incident_id}/updates", status_code=201)
def post_update(incident_id: int, update: UpdateIn) -> dict[str, Any]:
    now = time.time()
    with store.transaction() as conn:
        _incident(conn, incident_id)
        store.q(conn, "INSERT INTO ex_updates (incident_id, body, created_at) VALUES (?, ?, ?)",
                (incident_id, update.body, now))
        store.q(conn, "UPDATE ex_incidents SET updated_at = ? WHERE id = ?", (now, incident_id))
        message_id = app.publish("incident-updated", {"incident_id": incident_id}, conn=conn)
    return {"incident_id": incident_id, "message_id": message_id}


@web.post("/incidents/{incident_id}/members", status_code=201)
def add_member(incident_id: int, member: MemberIn) -> dict[str, Any]:
    with store.transaction() as conn:
        _incident(conn, incident_id)
        store.q(conn, "INSERT INTO ex_members (incident_id, username, joined_at) VALUES (?, ?, ?)",
                (incident_id, member.username, time.time()))
        message_id = app.publish("member-joined", {"incident_id": incident_id,
                                                   "username": member.username}, conn=conn)
    return {"incident_id": incident_id, "message_id": message_id}


@web.get("/incidents/{incident_id}")
def incident_detail(incident_id: int) -> dict[str, Any]:
    with store.transaction() as conn:
        row = _incident(conn, incident_id)
        welcomes = store.q(conn, "SELECT username, body FROM ex_welcomes WHERE incident_id = ? "
                           "ORDER BY created_at", (incident_id,))
    return {"id": row[0], "title": row[2], "status": row[3],
            "welcomes": [{"username": u, "body": b} for u, b in welcomes]}


@web.get("/status", response_class=HTMLResponse)
def status_page() -> str:
    with store.transaction() as conn:
        rows = store.q(conn, "SELECT html FROM ex_status_page WHERE id = 1")
    return rows[0][0] if rows else "<h1>All systems operational</h1>"


def _incident(conn: Any, incident_id: int) -> Any:
    rows = store.q(conn, "SELECT id, org_id, title, status FROM ex_incidents WHERE id = ?",
                   (incident_id,))
    if not rows:
        raise HTTPException(404, f"no incident {incident_id}")
    return rows[0]


# -- subscriptions -------------------------------------------------------------------------
@app.subscribe("member-joined", name="welcome-message", timeout=3, max_crashes=3,
               memory_limit="300MB", concurrency=4)
def welcome(message: Message) -> None:
    """Compose and store the welcome message of a member who joined an incident channel."""
    incident_id, username = message.payload["incident_id"], message.payload["username"]
    with store.transaction() as conn:
        title, settings = store.q(conn, "SELECT i.title, o.settings FROM ex_incidents i "
                                  "JOIN ex_orgs o ON o.id = i.org_id WHERE i.id = ?",
                                  (incident_id,))[0]
    org_settings = json.loads(settings)
    faults.inject(org_settings.get("drill_fault"))
    body = render_welcome(org_settings.get("welcome_template"), username, title)
    with store.transaction() as conn:
        if not store.q(conn, "SELECT 1 FROM ex_welcomes WHERE message_id = ?", (message.id,)):
            store.q(conn, "INSERT INTO ex_welcomes (message_id, incident_id, username, body, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (message.id, incident_id, username, body, time.time()))


@app.subscribe("incident-updated", name="status-page", concurrency=1)
def render_status_page(message: Message) -> None:
    """Re-render the public status page from the open incidents."""
    with store.transaction() as conn:
        rows = store.q(conn, "SELECT title, status, updated_at FROM ex_incidents "
                       "WHERE status = 'open' ORDER BY updated_at DESC LIMIT 20")
        items = "".join(f"<li>{html.escape(t)} ({html.escape(s)})</li>" for t, s, _ in rows)
        page = (f"<h1>Status</h1><ul>{items}</ul>" if rows
                else "<h1>All systems operational</h1>")
        store.q(conn, "DELETE FROM ex_status_page WHERE id = 1")
        store.q(conn, "INSERT INTO ex_status_page (id, html, rendered_at) VALUES (1, ?, ?)",
                (page, time.time()))


@app.cron("* * * * *", name="nudges")
def nudge_stale_incidents() -> None:
    """Incidents with no update for a while get a nudge for their commander."""
    now = time.time()
    with store.transaction() as conn:
        stale = store.q(conn, "SELECT id FROM ex_incidents WHERE status = 'open' "
                        "AND updated_at < ?", (now - NUDGE_AFTER_S,))
        for (incident_id,) in stale:
            store.q(conn, "INSERT INTO ex_nudges (incident_id, created_at) VALUES (?, ?)",
                    (incident_id, now))
