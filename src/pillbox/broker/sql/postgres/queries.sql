-- name: upsert_topic
-- Declare a topic (idempotent).
INSERT INTO pillbox_topics (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING;

-- name: upsert_subscription
-- Declare a subscription or update its policy; never touches `paused`.
INSERT INTO pillbox_subscriptions (name, topic, max_attempts, max_crashes, updated_at)
VALUES (%(name)s, %(topic)s, %(max_attempts)s, %(max_crashes)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET topic = excluded.topic, max_attempts = excluded.max_attempts,
    max_crashes = excluded.max_crashes, updated_at = excluded.updated_at;

-- name: subscription_names
-- Every subscription the database knows, with its topic.
SELECT name, topic FROM pillbox_subscriptions ORDER BY name;

-- name: publish
-- Store a message and fan it out to one delivery per subscription of its topic, in one
-- statement.
WITH message AS (
    INSERT INTO pillbox_messages (id, topic, payload, attributes, published_at)
    VALUES (%(id)s, %(topic)s, %(payload)s, %(attributes)s, %(now)s)
    RETURNING id)
INSERT INTO pillbox_deliveries (message_id, subscription, state, published_at, available_at)
SELECT message.id, s.name, 'available', %(now)s, %(available_at)s
FROM message, pillbox_subscriptions s WHERE s.topic = %(topic)s;

-- name: publish_notify
-- publish, and wake consumers of the topic when the transaction commits, in one statement.
WITH message AS (
    INSERT INTO pillbox_messages (id, topic, payload, attributes, published_at)
    VALUES (%(id)s, %(topic)s, %(payload)s, %(attributes)s, %(now)s)
    RETURNING id),
deliveries AS (
    INSERT INTO pillbox_deliveries (message_id, subscription, state, published_at, available_at)
    SELECT message.id, s.name, 'available', %(now)s, %(available_at)s
    FROM message, pillbox_subscriptions s WHERE s.topic = %(topic)s)
SELECT pg_notify('pillbox', %(topic)s);

-- name: notify
-- Wake consumers of the topic (delivered when the publishing transaction commits).
SELECT pg_notify('pillbox', %(topic)s);

-- name: lease
-- Lease up to %(limit)s available deliveries of one subscription (none while it is paused).
WITH picked AS (
    SELECT id FROM pillbox_deliveries
    WHERE subscription = %(subscription)s AND state = 'available' AND NOT suspect
      AND available_at <= %(now)s
      AND NOT (SELECT paused FROM pillbox_subscriptions WHERE name = %(subscription)s)
    ORDER BY available_at, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE pillbox_deliveries d
SET state = 'leased', attempt = d.attempt + 1, lease_owner = %(owner)s, lease_token = %(token)s,
    lease_deadline = %(deadline)s
FROM picked, pillbox_messages m
WHERE d.id = picked.id AND m.id = d.message_id
RETURNING d.id, d.message_id, d.subscription, d.attempt, m.topic, m.payload, m.attributes,
          m.published_at;

-- name: ack_and_lease
-- The worker's hot path in one statement (one round trip in autocommit): ack finished
-- deliveries (%(ids)s/%(tokens)s), then lease up to %(limit)s more. The two touch disjoint rows
-- (leased vs available); a data-modifying CTE always runs to completion.
WITH acked AS (
    UPDATE pillbox_deliveries d
    SET state = 'acked', finished_at = %(now)s, lease_owner = NULL, lease_token = NULL,
        lease_deadline = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::text[]) AS held(id, token)
    WHERE d.id = held.id AND d.lease_token = held.token AND d.state = 'leased'
    RETURNING d.id),
picked AS (
    SELECT id FROM pillbox_deliveries
    WHERE subscription = %(subscription)s AND state = 'available' AND NOT suspect
      AND available_at <= %(now)s
      AND NOT (SELECT paused FROM pillbox_subscriptions WHERE name = %(subscription)s)
    ORDER BY available_at, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE pillbox_deliveries d
SET state = 'leased', attempt = d.attempt + 1, lease_owner = %(owner)s, lease_token = %(token)s,
    lease_deadline = %(deadline)s
FROM picked, pillbox_messages m
WHERE d.id = picked.id AND m.id = d.message_id
RETURNING d.id, d.message_id, d.subscription, d.attempt, m.topic, m.payload, m.attributes,
          m.published_at;

-- name: lease_suspect
-- Lease one suspect delivery of the given subscriptions (JSON list), for the isolation lane.
WITH picked AS (
    SELECT d.id FROM pillbox_deliveries d JOIN pillbox_subscriptions s ON s.name = d.subscription
    WHERE d.state = 'available' AND d.suspect AND d.available_at <= %(now)s AND NOT s.paused
      AND d.subscription = ANY(%(subscriptions)s::text[])
    ORDER BY d.crashes, d.available_at, d.id LIMIT 1
    FOR UPDATE OF d SKIP LOCKED)
UPDATE pillbox_deliveries d
SET state = 'leased', attempt = d.attempt + 1, lease_owner = %(owner)s, lease_token = %(token)s,
    lease_deadline = %(deadline)s
FROM picked, pillbox_messages m
WHERE d.id = picked.id AND m.id = d.message_id
RETURNING d.id, d.message_id, d.subscription, d.attempt, m.topic, m.payload, m.attributes,
          m.published_at;

-- name: leased_messages
-- The messages behind freshly leased deliveries (ids as a JSON list).
SELECT d.id, d.message_id, d.subscription, d.attempt, m.topic, m.payload, m.attributes,
       m.published_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE d.id = ANY(%(ids)s::bigint[])
ORDER BY d.available_at, d.id;

-- name: ack
-- Done: only the current lease holder may ack. %(ids)s and %(tokens)s pair up by position.
UPDATE pillbox_deliveries d
SET state = 'acked', finished_at = %(now)s, lease_owner = NULL, lease_token = NULL,
    lease_deadline = NULL
FROM unnest(%(ids)s::bigint[], %(tokens)s::text[]) AS held(id, token)
WHERE d.id = held.id AND d.lease_token = held.token AND d.state = 'leased'
RETURNING d.id;

-- name: nack_retry
-- Handler raised: deliver again at %(retry_at)s, keeping the error.
UPDATE pillbox_deliveries
SET state = 'available', available_at = %(retry_at)s, last_error = %(error)s, lease_owner = NULL,
    lease_token = NULL, lease_deadline = NULL
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'leased';

-- name: nack_dead
-- Handler raised and attempts are exhausted: dead, with the error kept.
UPDATE pillbox_deliveries
SET state = 'dead', dead_reason = %(reason)s, last_error = %(error)s, finished_at = %(now)s,
    lease_owner = NULL, lease_token = NULL, lease_deadline = NULL
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'leased';

-- name: extend
-- Push the ack deadline of leases still held (%(ids)s and %(tokens)s pair up by position).
UPDATE pillbox_deliveries d SET lease_deadline = %(deadline)s
FROM unnest(%(ids)s::bigint[], %(tokens)s::text[]) AS held(id, token)
WHERE d.id = held.id AND d.lease_token = held.token AND d.state = 'leased';

-- name: release
-- Give leases back without charging an attempt (shutdown, prefetched but never started);
-- %(ids)s and %(tokens)s pair up by position.
UPDATE pillbox_deliveries d
SET state = 'available', attempt = d.attempt - 1, available_at = %(now)s, lease_owner = NULL,
    lease_token = NULL, lease_deadline = NULL
FROM unnest(%(ids)s::bigint[], %(tokens)s::text[]) AS held(id, token)
WHERE d.id = held.id AND d.lease_token = held.token AND d.state = 'leased';

-- name: rescue_expired
-- Leases whose owner vanished (deadline passed) become available again.
UPDATE pillbox_deliveries
SET state = 'available', available_at = %(now)s, lease_owner = NULL, lease_token = NULL,
    lease_deadline = NULL
WHERE state = 'leased' AND lease_deadline < %(now)s;

-- name: insert_crash
-- Store one crash record.
INSERT INTO pillbox_crashes (at, work_type, pid, exit_code, signal, cause, in_flight, traceback,
                             peak_rss_bytes, log_tail, summary)
VALUES (%(at)s, %(work_type)s, %(pid)s, %(exit_code)s, %(signal)s, %(cause)s, %(in_flight)s, %(traceback)s,
        %(peak_rss_bytes)s, %(log_tail)s, %(summary)s)
RETURNING id;

-- name: link_crash
-- Tie a delivery to a crash record with its role.
INSERT INTO pillbox_crash_deliveries (crash_id, delivery_id, role) VALUES (%(crash_id)s, %(id)s, %(role)s)
ON CONFLICT DO NOTHING;

-- name: charge_crash
-- The delivery was alone in a process that died: count a crash, quarantine at max_crashes,
-- else make it available again as a suspect (it will only run alone, in the isolation lane).
UPDATE pillbox_deliveries
SET crashes = crashes + 1, suspect = TRUE, last_error = %(error)s, available_at = %(now)s,
    lease_owner = NULL, lease_token = NULL, lease_deadline = NULL,
    state = CASE WHEN crashes + 1 >= (SELECT max_crashes FROM pillbox_subscriptions s
                                      WHERE s.name = subscription) THEN 'dead' ELSE 'available' END,
    dead_reason = CASE WHEN crashes + 1 >= (SELECT max_crashes FROM pillbox_subscriptions s
                                            WHERE s.name = subscription)
                       THEN 'poison pill' ELSE NULL END,
    finished_at = CASE WHEN crashes + 1 >= (SELECT max_crashes FROM pillbox_subscriptions s
                                            WHERE s.name = subscription) THEN %(now)s ELSE NULL END
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'leased'
RETURNING state, subscription, message_id;

-- name: charge_prime_suspect
-- The delivery whose thread crashed a process it shared with others (faulthandler's
-- "Current thread"): a suspect like the others, no attempt charged, but one crash counted,
-- and never up to max_crashes: only a crash alone (in the isolation lane) quarantines.
UPDATE pillbox_deliveries
SET crashes = crashes + CASE WHEN crashes + 1 < (SELECT max_crashes FROM pillbox_subscriptions s
                                                 WHERE s.name = subscription) THEN 1 ELSE 0 END,
    suspect = TRUE, attempt = attempt - 1, last_error = %(error)s, state = 'available',
    available_at = %(now)s, lease_owner = NULL, lease_token = NULL, lease_deadline = NULL
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'leased'
RETURNING state, subscription, message_id;

-- name: mark_suspect
-- The delivery shared a process that died with others: no attempt charged, retried alone.
UPDATE pillbox_deliveries
SET suspect = TRUE, attempt = attempt - 1, state = 'available', available_at = %(now)s,
    lease_owner = NULL, lease_token = NULL, lease_deadline = NULL
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'leased';

-- name: insert_event
-- Remember a failure, crash or error for counts over recent windows and for the timeline.
INSERT INTO pillbox_events (at, kind, subscription, delivery_id, message_id, detail)
VALUES (%(now)s, %(kind)s, %(subscription)s, %(delivery_id)s, %(message_id)s, %(detail)s);

-- name: set_paused
-- Pause or resume a subscription.
UPDATE pillbox_subscriptions SET paused = %(paused)s WHERE name = %(name)s;

-- name: paused_names
-- Names of paused subscriptions.
SELECT name FROM pillbox_subscriptions WHERE paused;

-- name: purge_count
-- How many deliveries a purge would remove (leased ones are never purged).
SELECT count(*) FROM pillbox_deliveries
WHERE subscription = %(subscription)s AND state IN ('available', 'dead')
  AND (%(before)s::float8 IS NULL OR published_at < %(before)s)
  AND (%(ids)s::text[] IS NULL OR message_id = ANY(%(ids)s::text[])
                    OR CAST(id AS TEXT) = ANY(%(ids)s::text[]));

-- name: purge
-- Remove the deliveries purge_count counted.
DELETE FROM pillbox_deliveries
WHERE subscription = %(subscription)s AND state IN ('available', 'dead')
  AND (%(before)s::float8 IS NULL OR published_at < %(before)s)
  AND (%(ids)s::text[] IS NULL OR message_id = ANY(%(ids)s::text[])
                    OR CAST(id AS TEXT) = ANY(%(ids)s::text[]));

-- name: replay
-- A dead delivery gets a fresh start; a former poison pill stays isolated.
UPDATE pillbox_deliveries
SET state = 'available', available_at = %(now)s, attempt = 0, crashes = 0, dead_reason = NULL,
    finished_at = NULL
WHERE id = %(id)s AND state = 'dead';

-- name: drop
-- Delete one dead delivery.
DELETE FROM pillbox_deliveries WHERE id = %(id)s AND state = 'dead';

-- name: get_delivery
-- One delivery with its message.
SELECT d.id, d.message_id, m.topic, d.subscription, d.state, d.attempt, d.crashes, d.suspect,
       m.payload, m.attributes, d.published_at, d.available_at, d.last_error, d.dead_reason,
       d.finished_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE d.id = %(id)s;

-- name: crash_ids_of
-- Crash records a delivery was part of.
SELECT crash_id FROM pillbox_crash_deliveries WHERE delivery_id = %(id)s ORDER BY crash_id;

-- name: list_dead
-- Dead deliveries, newest first, of one subscription or all (%(subscription)s NULL).
SELECT d.id, d.message_id, m.topic, d.subscription, d.state, d.attempt, d.crashes, d.suspect,
       m.payload, m.attributes, d.published_at, d.available_at, d.last_error, d.dead_reason,
       d.finished_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE d.state = 'dead' AND (%(subscription)s::text IS NULL OR d.subscription = %(subscription)s)
ORDER BY d.finished_at DESC, d.id DESC LIMIT %(limit)s;

-- name: list_deliveries
-- Deliveries of one message id (any subscription), or of one subscription in one state.
SELECT d.id, d.message_id, m.topic, d.subscription, d.state, d.attempt, d.crashes, d.suspect,
       m.payload, m.attributes, d.published_at, d.available_at, d.last_error, d.dead_reason,
       d.finished_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE (%(message_id)s::text IS NULL OR d.message_id = %(message_id)s)
  AND (%(subscription)s::text IS NULL OR d.subscription = %(subscription)s)
  AND (%(state)s::text IS NULL OR d.state = %(state)s)
ORDER BY d.id LIMIT %(limit)s;

-- name: stats
-- Per-subscription counts for status, the dashboard and metrics.
SELECT s.name, s.topic, s.paused,
  (SELECT count(*) FROM pillbox_deliveries d
    WHERE d.subscription = s.name AND d.state = 'available') AS backlog,
  (SELECT count(*) FROM pillbox_deliveries d
    WHERE d.subscription = s.name AND d.state = 'leased') AS in_flight,
  (SELECT min(d.published_at) FROM pillbox_deliveries d
    WHERE d.subscription = s.name AND d.state IN ('available', 'leased')) AS oldest,
  (SELECT count(*) FROM pillbox_deliveries d
    WHERE d.subscription = s.name AND d.state = 'dead') AS dead,
  (SELECT count(*) FROM pillbox_deliveries d WHERE d.subscription = s.name
    AND d.state = 'acked' AND d.finished_at >= %(since_5m)s) AS acked_5m,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'failed' AND e.at >= %(since_5m)s) AS failed_5m,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'crashed' AND e.at >= %(since_5m)s) AS crashed_5m,
  (SELECT count(*) FROM pillbox_deliveries d WHERE d.subscription = s.name
    AND d.state = 'acked' AND d.finished_at >= %(since_1h)s) AS acked_1h,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'failed' AND e.at >= %(since_1h)s) AS failed_1h,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'crashed' AND e.at >= %(since_1h)s) AS crashed_1h,
  (SELECT count(*) FROM pillbox_deliveries d WHERE d.subscription = s.name
    AND d.state = 'dead' AND d.finished_at >= %(since_1h)s) AS dead_1h
FROM pillbox_subscriptions s ORDER BY s.name;

-- name: list_crashes
-- Crash records since a time, newest first.
SELECT id, at, work_type, pid, exit_code, signal, cause, in_flight, traceback, peak_rss_bytes,
       log_tail, summary
FROM pillbox_crashes WHERE at >= %(since)s ORDER BY at DESC, id DESC LIMIT %(limit)s;

-- name: get_crash
-- One crash record.
SELECT id, at, work_type, pid, exit_code, signal, cause, in_flight, traceback, peak_rss_bytes,
       log_tail, summary
FROM pillbox_crashes WHERE id = %(id)s;

-- name: list_events
-- Recent events of some kind (web errors, thread errors...), newest first.
SELECT id, at, kind, subscription, delivery_id, message_id, detail FROM pillbox_events
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s) AND at >= %(since)s ORDER BY at DESC, id DESC LIMIT %(limit)s;

-- name: insert_tick
-- Claim one cron tick; a second claimer of the same tick inserts nothing.
INSERT INTO pillbox_cron_ticks (cron, tick_at, message_id) VALUES (%(cron)s, %(tick_at)s, %(message_id)s)
ON CONFLICT DO NOTHING RETURNING cron;

-- name: last_tick
-- The latest claimed tick of a cron.
SELECT max(tick_at) FROM pillbox_cron_ticks WHERE cron = %(cron)s;

-- name: unfinished_count
-- Deliveries of a subscription not yet acked or dead (for the cron overlap rule).
SELECT count(*) FROM pillbox_deliveries
WHERE subscription = %(subscription)s AND state IN ('available', 'leased');

-- name: migration_lock
-- Serialise schema changes across processes for the rest of the transaction.
SELECT pg_advisory_xact_lock(7274511);

-- name: has_schema
-- Whether pillbox's tables were ever created here (operator commands must not create them).
SELECT to_regclass('pillbox_migrations') IS NOT NULL;

-- name: create_migrations_table
-- Bootstrap: the table recording which migrations were applied.
CREATE TABLE IF NOT EXISTS pillbox_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL);

-- name: applied_migrations
-- Versions already applied.
SELECT version FROM pillbox_migrations;

-- name: record_migration
-- Remember an applied migration.
INSERT INTO pillbox_migrations (version, name, applied_at) VALUES (%(version)s, %(name)s, %(now)s);

-- name: leases_of_owner
-- Deliveries a (dead) owner still holds.
SELECT id, lease_token FROM pillbox_deliveries WHERE state = 'leased' AND lease_owner = %(owner)s;

-- name: list_subscription_events
-- Recent events of one kind for one subscription (the dashboard's recent failures), newest first.
SELECT id, at, kind, subscription, delivery_id, message_id, detail FROM pillbox_events
WHERE kind = %(kind)s AND subscription = %(subscription)s AND at >= %(since)s
ORDER BY at DESC, id DESC LIMIT %(limit)s;

-- name: totals_published
-- Messages ever published, per topic (all-time counter for metrics).
SELECT topic, count(*) FROM pillbox_messages GROUP BY topic;

-- name: totals_acked
-- Acked deliveries, per subscription (all-time counter for metrics).
SELECT subscription, count(*) FROM pillbox_deliveries WHERE state = 'acked' GROUP BY subscription;

-- name: totals_events
-- Events ever recorded, per kind and subscription (NULL for web and thread errors).
SELECT kind, subscription, count(*) FROM pillbox_events GROUP BY kind, subscription;

-- name: totals_crashes
-- Crash records, per work type and cause.
SELECT work_type, cause, count(*) FROM pillbox_crashes GROUP BY work_type, cause;

-- name: add_durations
-- Add a worker's observed handler durations to one bucket.
INSERT INTO pillbox_handler_durations (subscription, le, observations, seconds)
VALUES (%(subscription)s, %(le)s, %(observations)s, %(seconds)s)
ON CONFLICT (subscription, le) DO UPDATE
SET observations = pillbox_handler_durations.observations + excluded.observations,
    seconds = pillbox_handler_durations.seconds + excluded.seconds;

-- name: totals_durations
-- Handler duration buckets, per subscription.
SELECT subscription, le, observations, seconds FROM pillbox_handler_durations;

-- name: has_ready
-- Is anything ready to lease? A cheap read before a pull takes the write lock.
SELECT 1 FROM pillbox_deliveries
WHERE subscription = %(subscription)s AND state = 'available' AND NOT suspect
  AND available_at <= %(now)s
LIMIT 1;

-- name: has_suspect
-- Is any suspect ready for the isolation lane?
SELECT 1 FROM pillbox_deliveries
WHERE state = 'available' AND suspect AND available_at <= %(now)s
LIMIT 1;

-- name: crash_summaries
-- Crash records since a time without their tracebacks (the dashboard's timeline), newest first.
SELECT id, at, work_type, cause, summary FROM pillbox_crashes WHERE at >= %(since)s
ORDER BY at DESC, id DESC LIMIT %(limit)s;

-- name: event_count
-- How many events of one kind since a time.
SELECT count(*) FROM pillbox_events WHERE kind = %(kind)s AND at >= %(since)s;

-- name: identity
-- Which database and which pillbox tables a connection sees (publish(conn=) checks the
-- caller's connection against the broker's own before writing through it).
SELECT current_database(), inet_server_port(), to_regclass('pillbox_messages')::oid;
