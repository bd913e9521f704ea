-- name: upsert_topic
-- Declare a topic (idempotent).
INSERT INTO pillbox_topics (name) VALUES (:name) ON CONFLICT (name) DO NOTHING;

-- name: upsert_subscription
-- Declare a subscription or update its policy; never touches `paused`.
INSERT INTO pillbox_subscriptions (name, topic, max_attempts, max_crashes, updated_at)
VALUES (:name, :topic, :max_attempts, :max_crashes, :now)
ON CONFLICT (name) DO UPDATE SET topic = excluded.topic, max_attempts = excluded.max_attempts,
    max_crashes = excluded.max_crashes, updated_at = excluded.updated_at;

-- name: subscription_names
-- Every subscription the database knows, with its topic.
SELECT name, topic FROM pillbox_subscriptions ORDER BY name;

-- name: insert_message
-- Store a published message once; deliveries are fanned out by fan_out.
INSERT INTO pillbox_messages (id, topic, payload, attributes, published_at)
VALUES (:id, :topic, :payload, :attributes, :now);

-- name: fan_out
-- One delivery per subscription of the topic.
INSERT INTO pillbox_deliveries (message_id, subscription, state, published_at, available_at)
SELECT :id, name, 'available', :now, :available_at FROM pillbox_subscriptions WHERE topic = :topic;

-- name: lease
-- Lease up to :limit available deliveries of one subscription (none while it is paused).
UPDATE pillbox_deliveries
SET state = 'leased', attempt = attempt + 1, lease_owner = :owner, lease_token = :token,
    lease_deadline = :deadline
WHERE id IN (
    SELECT id FROM pillbox_deliveries
    WHERE subscription = :subscription AND state = 'available' AND suspect = 0
      AND available_at <= :now
    ORDER BY available_at, id LIMIT :limit)
  AND (SELECT paused FROM pillbox_subscriptions WHERE name = :subscription) = 0
RETURNING id;

-- name: lease_suspect
-- Lease one suspect delivery of the given subscriptions (JSON list), for the isolation lane.
UPDATE pillbox_deliveries
SET state = 'leased', attempt = attempt + 1, lease_owner = :owner, lease_token = :token,
    lease_deadline = :deadline
WHERE id IN (
    SELECT d.id FROM pillbox_deliveries d JOIN pillbox_subscriptions s ON s.name = d.subscription
    WHERE d.state = 'available' AND d.suspect = 1 AND d.available_at <= :now AND s.paused = 0
      AND d.subscription IN (SELECT value FROM json_each(:subscriptions))
    ORDER BY d.crashes, d.available_at, d.id LIMIT 1)
RETURNING id;

-- name: leased_messages
-- The messages behind freshly leased deliveries (ids as a JSON list).
SELECT d.id, d.message_id, d.subscription, d.attempt, m.topic, m.payload, m.attributes,
       m.published_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE d.id IN (SELECT value FROM json_each(:ids))
ORDER BY d.available_at, d.id;

-- name: ack
-- Done: only the current lease holder may ack. :ids and :tokens (JSON lists) pair up by position.
UPDATE pillbox_deliveries
SET state = 'acked', finished_at = :now, lease_owner = NULL, lease_token = NULL,
    lease_deadline = NULL
WHERE state = 'leased' AND (id, lease_token) IN (
    SELECT i.value, t.value FROM json_each(:ids) AS i JOIN json_each(:tokens) AS t ON t.key = i.key)
RETURNING id;

-- name: nack_retry
-- Handler raised: deliver again at :retry_at, keeping the error.
UPDATE pillbox_deliveries
SET state = 'available', available_at = :retry_at, last_error = :error, lease_owner = NULL,
    lease_token = NULL, lease_deadline = NULL
WHERE id = :id AND lease_token = :token AND state = 'leased';

-- name: nack_dead
-- Handler raised and attempts are exhausted: dead, with the error kept.
UPDATE pillbox_deliveries
SET state = 'dead', dead_reason = :reason, last_error = :error, finished_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_deadline = NULL
WHERE id = :id AND lease_token = :token AND state = 'leased';

-- name: extend
-- Push the ack deadline of leases still held (:ids and :tokens pair up by position).
UPDATE pillbox_deliveries SET lease_deadline = :deadline
WHERE state = 'leased' AND (id, lease_token) IN (
    SELECT i.value, t.value FROM json_each(:ids) AS i JOIN json_each(:tokens) AS t ON t.key = i.key);

-- name: release
-- Give leases back without charging an attempt (shutdown, prefetched but never started);
-- :ids and :tokens pair up by position.
UPDATE pillbox_deliveries
SET state = 'available', attempt = attempt - 1, available_at = :now, lease_owner = NULL,
    lease_token = NULL, lease_deadline = NULL
WHERE state = 'leased' AND (id, lease_token) IN (
    SELECT i.value, t.value FROM json_each(:ids) AS i JOIN json_each(:tokens) AS t ON t.key = i.key);

-- name: rescue_expired
-- Leases whose owner vanished (deadline passed) become available again.
UPDATE pillbox_deliveries
SET state = 'available', available_at = :now, lease_owner = NULL, lease_token = NULL,
    lease_deadline = NULL
WHERE state = 'leased' AND lease_deadline < :now;

-- name: insert_crash
-- Store one crash record.
INSERT INTO pillbox_crashes (at, work_type, pid, exit_code, signal, cause, in_flight, traceback,
                             peak_rss_bytes, log_tail, summary)
VALUES (:at, :work_type, :pid, :exit_code, :signal, :cause, :in_flight, :traceback,
        :peak_rss_bytes, :log_tail, :summary)
RETURNING id;

-- name: link_crash
-- Tie a delivery to a crash record with its role.
INSERT INTO pillbox_crash_deliveries (crash_id, delivery_id, role) VALUES (:crash_id, :id, :role)
ON CONFLICT DO NOTHING;

-- name: charge_crash
-- The delivery was alone in a process that died: count a crash, quarantine at max_crashes,
-- else make it available again as a suspect (it will only run alone, in the isolation lane).
UPDATE pillbox_deliveries
SET crashes = crashes + 1, suspect = 1, last_error = :error, available_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_deadline = NULL,
    state = CASE WHEN crashes + 1 >= (SELECT max_crashes FROM pillbox_subscriptions s
                                      WHERE s.name = subscription) THEN 'dead' ELSE 'available' END,
    dead_reason = CASE WHEN crashes + 1 >= (SELECT max_crashes FROM pillbox_subscriptions s
                                            WHERE s.name = subscription)
                       THEN 'poison pill' ELSE NULL END,
    finished_at = CASE WHEN crashes + 1 >= (SELECT max_crashes FROM pillbox_subscriptions s
                                            WHERE s.name = subscription) THEN :now ELSE NULL END
WHERE id = :id AND lease_token = :token AND state = 'leased'
RETURNING state, subscription, message_id;

-- name: charge_prime_suspect
-- The delivery whose thread crashed a process it shared with others (faulthandler's
-- "Current thread"): a suspect like the others, no attempt charged, but one crash counted,
-- and never up to max_crashes: only a crash alone (in the isolation lane) quarantines.
UPDATE pillbox_deliveries
SET crashes = crashes + CASE WHEN crashes + 1 < (SELECT max_crashes FROM pillbox_subscriptions s
                                                 WHERE s.name = subscription) THEN 1 ELSE 0 END,
    suspect = 1, attempt = attempt - 1, last_error = :error, state = 'available',
    available_at = :now, lease_owner = NULL, lease_token = NULL, lease_deadline = NULL
WHERE id = :id AND lease_token = :token AND state = 'leased'
RETURNING state, subscription, message_id;

-- name: mark_suspect
-- The delivery shared a process that died with others: no attempt charged, retried alone.
UPDATE pillbox_deliveries
SET suspect = 1, attempt = attempt - 1, state = 'available', available_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_deadline = NULL
WHERE id = :id AND lease_token = :token AND state = 'leased';

-- name: insert_event
-- Remember a failure, crash or error for counts over recent windows and for the timeline.
INSERT INTO pillbox_events (at, kind, subscription, delivery_id, message_id, detail)
VALUES (:now, :kind, :subscription, :delivery_id, :message_id, :detail);

-- name: set_paused
-- Pause or resume a subscription.
UPDATE pillbox_subscriptions SET paused = :paused WHERE name = :name;

-- name: paused_names
-- Names of paused subscriptions.
SELECT name FROM pillbox_subscriptions WHERE paused = 1;

-- name: purge_count
-- How many deliveries a purge would remove (leased ones are never purged).
SELECT count(*) FROM pillbox_deliveries
WHERE subscription = :subscription AND state IN ('available', 'dead')
  AND (:before IS NULL OR published_at < :before)
  AND (:ids IS NULL OR message_id IN (SELECT value FROM json_each(:ids))
                    OR CAST(id AS TEXT) IN (SELECT value FROM json_each(:ids)));

-- name: purge
-- Remove the deliveries purge_count counted.
DELETE FROM pillbox_deliveries
WHERE subscription = :subscription AND state IN ('available', 'dead')
  AND (:before IS NULL OR published_at < :before)
  AND (:ids IS NULL OR message_id IN (SELECT value FROM json_each(:ids))
                    OR CAST(id AS TEXT) IN (SELECT value FROM json_each(:ids)));

-- name: replay
-- A dead delivery gets a fresh start; a former poison pill stays isolated.
UPDATE pillbox_deliveries
SET state = 'available', available_at = :now, attempt = 0, crashes = 0, dead_reason = NULL,
    finished_at = NULL
WHERE id = :id AND state = 'dead';

-- name: drop
-- Delete one dead delivery.
DELETE FROM pillbox_deliveries WHERE id = :id AND state = 'dead';

-- name: get_delivery
-- One delivery with its message.
SELECT d.id, d.message_id, m.topic, d.subscription, d.state, d.attempt, d.crashes, d.suspect,
       m.payload, m.attributes, d.published_at, d.available_at, d.last_error, d.dead_reason,
       d.finished_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE d.id = :id;

-- name: crash_ids_of
-- Crash records a delivery was part of.
SELECT crash_id FROM pillbox_crash_deliveries WHERE delivery_id = :id ORDER BY crash_id;

-- name: list_dead
-- Dead deliveries, newest first, of one subscription or all (:subscription NULL).
SELECT d.id, d.message_id, m.topic, d.subscription, d.state, d.attempt, d.crashes, d.suspect,
       m.payload, m.attributes, d.published_at, d.available_at, d.last_error, d.dead_reason,
       d.finished_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE d.state = 'dead' AND (:subscription IS NULL OR d.subscription = :subscription)
ORDER BY d.finished_at DESC, d.id DESC LIMIT :limit;

-- name: list_deliveries
-- Deliveries of one message id (any subscription), or of one subscription in one state.
SELECT d.id, d.message_id, m.topic, d.subscription, d.state, d.attempt, d.crashes, d.suspect,
       m.payload, m.attributes, d.published_at, d.available_at, d.last_error, d.dead_reason,
       d.finished_at
FROM pillbox_deliveries d JOIN pillbox_messages m ON m.id = d.message_id
WHERE (:message_id IS NULL OR d.message_id = :message_id)
  AND (:subscription IS NULL OR d.subscription = :subscription)
  AND (:state IS NULL OR d.state = :state)
ORDER BY d.id LIMIT :limit;

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
    AND d.state = 'acked' AND d.finished_at >= :since_5m) AS acked_5m,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'failed' AND e.at >= :since_5m) AS failed_5m,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'crashed' AND e.at >= :since_5m) AS crashed_5m,
  (SELECT count(*) FROM pillbox_deliveries d WHERE d.subscription = s.name
    AND d.state = 'acked' AND d.finished_at >= :since_1h) AS acked_1h,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'failed' AND e.at >= :since_1h) AS failed_1h,
  (SELECT count(*) FROM pillbox_events e WHERE e.subscription = s.name
    AND e.kind = 'crashed' AND e.at >= :since_1h) AS crashed_1h,
  (SELECT count(*) FROM pillbox_deliveries d WHERE d.subscription = s.name
    AND d.state = 'dead' AND d.finished_at >= :since_1h) AS dead_1h
FROM pillbox_subscriptions s ORDER BY s.name;

-- name: list_crashes
-- Crash records since a time, newest first.
SELECT id, at, work_type, pid, exit_code, signal, cause, in_flight, traceback, peak_rss_bytes,
       log_tail, summary
FROM pillbox_crashes WHERE at >= :since ORDER BY at DESC, id DESC LIMIT :limit;

-- name: get_crash
-- One crash record.
SELECT id, at, work_type, pid, exit_code, signal, cause, in_flight, traceback, peak_rss_bytes,
       log_tail, summary
FROM pillbox_crashes WHERE id = :id;

-- name: list_events
-- Recent events of some kind (web errors, thread errors...), newest first.
SELECT id, at, kind, subscription, delivery_id, message_id, detail FROM pillbox_events
WHERE (:kind IS NULL OR kind = :kind) AND at >= :since ORDER BY at DESC, id DESC LIMIT :limit;

-- name: insert_tick
-- Claim one cron tick; a second claimer of the same tick inserts nothing.
INSERT INTO pillbox_cron_ticks (cron, tick_at, message_id) VALUES (:cron, :tick_at, :message_id)
ON CONFLICT DO NOTHING RETURNING cron;

-- name: last_tick
-- The latest claimed tick of a cron.
SELECT max(tick_at) FROM pillbox_cron_ticks WHERE cron = :cron;

-- name: unfinished_count
-- Deliveries of a subscription not yet acked or dead (for the cron overlap rule).
SELECT count(*) FROM pillbox_deliveries
WHERE subscription = :subscription AND state IN ('available', 'leased');

-- name: has_schema
-- Whether pillbox's tables were ever created here (operator commands must not create them).
SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'pillbox_migrations';

-- name: create_migrations_table
-- Bootstrap: the table recording which migrations were applied.
CREATE TABLE IF NOT EXISTS pillbox_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL);

-- name: applied_migrations
-- Versions already applied.
SELECT version FROM pillbox_migrations;

-- name: record_migration
-- Remember an applied migration.
INSERT INTO pillbox_migrations (version, name, applied_at) VALUES (:version, :name, :now);

-- name: leases_of_owner
-- Deliveries a (dead) owner still holds.
SELECT id, lease_token FROM pillbox_deliveries WHERE state = 'leased' AND lease_owner = :owner;

-- name: list_subscription_events
-- Recent events of one kind for one subscription (the dashboard's recent failures), newest first.
SELECT id, at, kind, subscription, delivery_id, message_id, detail FROM pillbox_events
WHERE kind = :kind AND subscription = :subscription AND at >= :since
ORDER BY at DESC, id DESC LIMIT :limit;

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
VALUES (:subscription, :le, :observations, :seconds)
ON CONFLICT (subscription, le) DO UPDATE
SET observations = pillbox_handler_durations.observations + excluded.observations,
    seconds = pillbox_handler_durations.seconds + excluded.seconds;

-- name: totals_durations
-- Handler duration buckets, per subscription.
SELECT subscription, le, observations, seconds FROM pillbox_handler_durations;

-- name: has_ready
-- Is anything ready to lease? A cheap read before a pull takes the write lock.
SELECT 1 FROM pillbox_deliveries
WHERE subscription = :subscription AND state = 'available' AND suspect = 0
  AND available_at <= :now
LIMIT 1;

-- name: has_suspect
-- Is any suspect ready for the isolation lane?
SELECT 1 FROM pillbox_deliveries
WHERE state = 'available' AND suspect = 1 AND available_at <= :now
LIMIT 1;

-- name: crash_summaries
-- Crash records since a time without their tracebacks (the dashboard's timeline), newest first.
SELECT id, at, work_type, cause, summary FROM pillbox_crashes WHERE at >= :since
ORDER BY at DESC, id DESC LIMIT :limit;

-- name: event_count
-- How many events of one kind since a time.
SELECT count(*) FROM pillbox_events WHERE kind = :kind AND at >= :since;
