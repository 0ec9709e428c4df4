-- District database (PostgreSQL >= 15). Idempotent: every statement may run again on an
-- existing database (the recorder applies this file at start-up, see district/db.py).
-- Times are timestamptz (stored as UTC). Slugs (campus, door) follow docs/mqtt.md.

CREATE TABLE IF NOT EXISTS schema_info (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO schema_info (key, value) VALUES ('version', '1') ON CONFLICT (key) DO NOTHING;

-- Campuses the district knows. The recorder refuses topics of any other campus (counted in
-- rejected_payloads with reason 'unknown_campus').
CREATE TABLE IF NOT EXISTS campuses (
    campus     text PRIMARY KEY CHECK (campus ~ '^[a-z0-9][a-z0-9_-]*$' AND campus <> 'all'),
    name       text NOT NULL DEFAULT '',
    panel_url  text NOT NULL DEFAULT '',         -- link from the board to the campus panel
    added_at   timestamptz NOT NULL DEFAULT now()
);
-- The campus broker's bridge to the district (Mosquitto's notification topic
-- {prefix}/bridges/{campus}/state: 1 connected, 0 not): a whole campus going dark.
ALTER TABLE campuses ADD COLUMN IF NOT EXISTS bridge_online boolean;
ALTER TABLE campuses ADD COLUMN IF NOT EXISTS bridge_at timestamptz;

-- One row per door ever heard of: availability (status topic), latest retained state.
CREATE TABLE IF NOT EXISTS doors (
    campus      text NOT NULL REFERENCES campuses (campus) ON DELETE CASCADE,
    door        text NOT NULL CHECK (door ~ '^[a-z0-9][a-z0-9_-]*$'),
    online      boolean NOT NULL DEFAULT false,  -- last status payload: online / offline
    status_at   timestamptz,                     -- when that status arrived
    last_seen   timestamptz,                     -- last message of any kind from this door
    state       jsonb,                           -- last state payload (state.json)
    state_at    timestamptz,                     -- when it arrived
    epoch       text,                            -- journal epoch of the newest state/event
    PRIMARY KEY (campus, door)
);

-- Every journal event, partitioned by month of the event's own time (ts). Partitions are
-- created on demand by district_ensure_month() and dropped whole by retention.
CREATE TABLE IF NOT EXISTS events (
    id          uuid NOT NULL,
    campus      text NOT NULL,
    door        text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    ts          timestamptz NOT NULL,
    request_id  text,
    actor       text,
    data        jsonb NOT NULL,                  -- the whole payload as published
    received_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS events_door_ts ON events (campus, door, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_type_ts ON events (type, ts);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id) WHERE request_id IS NOT NULL;

-- Idempotence ledger. A unique index on a partitioned table must contain the partition key,
-- so "event id unique" and "per door and epoch, seq unique" live in this plain table: an
-- event is inserted into events only when its key row was new (same transaction).
-- Rows older than the events retention are deleted with the partitions.
CREATE TABLE IF NOT EXISTS event_keys (
    id          uuid PRIMARY KEY,
    campus      text NOT NULL,
    door        text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campus, door, epoch, seq)
);
CREATE INDEX IF NOT EXISTS event_keys_ts ON event_keys (ts);

-- Creates (once) the monthly partition of events holding time t, UTC month bounds, and
-- returns its name. Safe under concurrent recorders (advisory lock).
CREATE OR REPLACE FUNCTION district_ensure_month(t timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo   timestamptz := date_trunc('month', t, 'UTC');
    hi   timestamptz := (date_trunc('month', t, 'UTC') AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
    name text := 'events_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('district_ensure_month'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        END IF;
    END IF;
    RETURN name;
END $$;

-- Drops every monthly partition that ends on or before 'before' and the matching key rows;
-- returns the names dropped.
CREATE OR REPLACE FUNCTION district_drop_months(before timestamptz) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('district_ensure_month'));
    FOR part IN
        SELECT c.relname AS name
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'events'::regclass
           AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
           AND (to_timestamp(substr(c.relname, 8), 'YYYY_MM') AT TIME ZONE 'UTC' + interval '1 month')
               AT TIME ZONE 'UTC' <= before
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', part.name);
        RETURN NEXT part.name;
    END LOOP;
    DELETE FROM event_keys WHERE ts < before;
END $$;

-- Entrance snapshots (raw JPEG) as published on {root}/snapshot/{request_id}; one row per
-- distinct image of a ring (a re-send of the same bytes is the same row).
CREATE TABLE IF NOT EXISTS snapshots (
    id          bigserial PRIMARY KEY,
    campus      text NOT NULL,
    door        text NOT NULL,
    request_id  text NOT NULL,
    sha256      text NOT NULL,                   -- matches the snapshot_captured event's sha256
    size        integer NOT NULL,
    content_type text NOT NULL DEFAULT 'image/jpeg',
    data        bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campus, door, request_id, sha256)
);
CREATE INDEX IF NOT EXISTS snapshots_received ON snapshots (received_at);
CREATE INDEX IF NOT EXISTS snapshots_request ON snapshots (request_id);

-- Holes in a door's seq sequence (per journal epoch): open while any seq in
-- [from_seq, to_seq] is missing, closed when the re-send filled it.
CREATE TABLE IF NOT EXISTS gaps (
    id          bigserial PRIMARY KEY,
    campus      text NOT NULL,
    door        text NOT NULL,
    epoch       text NOT NULL,
    from_seq    bigint NOT NULL,
    to_seq      bigint NOT NULL CHECK (to_seq >= from_seq),
    missing     bigint NOT NULL,                 -- seqs still missing in the range
    opened_at   timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,                     -- NULL while open
    UNIQUE (campus, door, epoch, from_seq)
);
CREATE INDEX IF NOT EXISTS gaps_open ON gaps (campus, door) WHERE closed_at IS NULL;

-- Per door and journal epoch: the highest seq recorded (max_seq, kept by the recorder on
-- every write) and the gap scanner's watermark: every seq up to contiguous_seq has been
-- checked for holes (NULL until the scanner first looks; see district/recorder/gaps.py).
CREATE TABLE IF NOT EXISTS seq_watermarks (
    campus         text NOT NULL,
    door           text NOT NULL,
    epoch          text NOT NULL,
    max_seq        bigint NOT NULL,
    contiguous_seq bigint,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campus, door, epoch)
);
CREATE INDEX IF NOT EXISTS seq_watermarks_behind ON seq_watermarks (campus, door)
    WHERE contiguous_seq IS NULL OR contiguous_seq < max_seq;

-- Payloads the recorder refused: a capped sample for inspection ...
CREATE TABLE IF NOT EXISTS rejected_payloads (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    reason      text NOT NULL,                   -- e.g. invalid_json, schema, unknown_campus, oversized
    detail      text NOT NULL DEFAULT '',
    size        integer NOT NULL,                -- full payload size
    payload     bytea NOT NULL                   -- first bytes only (recorder.rejected_keep_bytes)
);
CREATE INDEX IF NOT EXISTS rejected_at ON rejected_payloads (at);
-- ... and exact counts per reason (never trimmed).
CREATE TABLE IF NOT EXISTS rejected_totals (
    reason      text PRIMARY KEY,
    count       bigint NOT NULL,
    last_at     timestamptz NOT NULL
);

-- Board actions (sign-ins, lockdowns started/ended from the board, account changes).
CREATE TABLE IF NOT EXISTS audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    username    text NOT NULL,
    action      text NOT NULL,
    campus      text,                            -- NULL for district-wide actions
    address     text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);

-- Board accounts.
CREATE TABLE IF NOT EXISTS board_users (
    username      text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9._-]{1,64}$'),
    display_name  text NOT NULL DEFAULT '',
    role          text NOT NULL CHECK (role IN ('viewer', 'operator')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
