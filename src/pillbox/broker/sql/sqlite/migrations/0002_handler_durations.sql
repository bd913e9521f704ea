-- Version 2: handler durations, as Prometheus histogram buckets per subscription.
-- Workers add what they observed every few seconds; a scrape reads the sums. `le` is the
-- bucket's upper bound as Prometheus writes it ("0.005", "+Inf"); counts are per bucket (not
-- cumulative) and `seconds` is the sum of the durations that fell in it.
CREATE TABLE IF NOT EXISTS pillbox_handler_durations (
    subscription TEXT NOT NULL,
    le TEXT NOT NULL,
    observations INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (subscription, le)
);
