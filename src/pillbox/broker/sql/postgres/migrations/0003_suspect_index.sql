-- Version 3: an index of the suspects alone. The isolation lane looks for a suspect every
-- time a message is published; without this it scanned every available delivery of every
-- subscription, so a large backlog kept the idle lane busy. Suspects are rare, so the index
-- is nearly empty and the look costs one seek.
CREATE INDEX IF NOT EXISTS pillbox_deliveries_suspects
    ON pillbox_deliveries (available_at, id) WHERE state = 'available' AND suspect;
