-- The whole pillbox schema, version 1 (SQLite).
-- A delivery moves: available -> leased -> acked
--                               leased -> available (nack with retry, crash below max_crashes,
--                                                    released at shutdown, lease expired)
--                               leased -> dead      (max attempts, poison pill)
--                   dead -> available (replay)
CREATE TABLE IF NOT EXISTS pillbox_topics (
    name TEXT PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS pillbox_subscriptions (
    name TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    max_crashes INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pillbox_subscriptions_topic ON pillbox_subscriptions (topic);

CREATE TABLE IF NOT EXISTS pillbox_messages (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    attributes TEXT NOT NULL,
    published_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS pillbox_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES pillbox_messages (id),
    subscription TEXT NOT NULL,
    state TEXT NOT NULL,                -- available | leased | acked | dead
    published_at REAL NOT NULL,
    available_at REAL NOT NULL,         -- not delivered before this time
    attempt INTEGER NOT NULL DEFAULT 0, -- deliveries so far (the handler sees attempt >= 1)
    crashes INTEGER NOT NULL DEFAULT 0, -- process deaths attributed to this delivery
    suspect INTEGER NOT NULL DEFAULT 0, -- 1: run only alone, in the isolation lane
    lease_owner TEXT,
    lease_token TEXT,
    lease_deadline REAL,
    last_error TEXT,
    dead_reason TEXT,
    finished_at REAL,                   -- acked or dead at
    UNIQUE (subscription, message_id)
);
CREATE INDEX IF NOT EXISTS pillbox_deliveries_ready
    ON pillbox_deliveries (subscription, suspect, available_at) WHERE state = 'available';
CREATE INDEX IF NOT EXISTS pillbox_deliveries_leased
    ON pillbox_deliveries (lease_deadline) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS pillbox_deliveries_finished
    ON pillbox_deliveries (subscription, state, finished_at) WHERE state IN ('acked', 'dead');

CREATE TABLE IF NOT EXISTS pillbox_crashes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    work_type TEXT NOT NULL,
    pid INTEGER NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    cause TEXT NOT NULL,                -- segfault | abort | exit | killed | memory | timeout | stalled
    in_flight TEXT NOT NULL,            -- JSON list of what the process was doing
    traceback TEXT NOT NULL,            -- crashing thread first, other threads capped
    peak_rss_bytes INTEGER NOT NULL,
    log_tail TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pillbox_crashes_at ON pillbox_crashes (at);

CREATE TABLE IF NOT EXISTS pillbox_crash_deliveries (
    crash_id INTEGER NOT NULL REFERENCES pillbox_crashes (id),
    delivery_id INTEGER NOT NULL,
    role TEXT NOT NULL,                 -- culprit | suspect | released
    PRIMARY KEY (crash_id, delivery_id)
);
CREATE INDEX IF NOT EXISTS pillbox_crash_deliveries_delivery
    ON pillbox_crash_deliveries (delivery_id);

CREATE TABLE IF NOT EXISTS pillbox_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,                 -- failed | crashed | dead | thread_error | web_error ...
    subscription TEXT,
    delivery_id INTEGER,
    message_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pillbox_events_at ON pillbox_events (kind, at);

CREATE TABLE IF NOT EXISTS pillbox_cron_ticks (
    cron TEXT NOT NULL,
    tick_at REAL NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (cron, tick_at)
);
