-- The district board's own additions to district/schema.sql (which holds board_users and
-- audit). Idempotent: applied at every board start, after district/schema.sql.

-- Server-side sessions. Only the SHA-256 of a session token is stored: a copy of the table
-- cannot sign anybody in. In PostgreSQL (not in memory) so several board instances behind
-- one nginx share them.
CREATE TABLE IF NOT EXISTS board_sessions (
    token_hash text PRIMARY KEY,
    id         text NOT NULL UNIQUE,
    username   text NOT NULL REFERENCES board_users(username) ON DELETE CASCADE,
    csrf       text NOT NULL,
    created    double precision NOT NULL,
    last_seen  double precision NOT NULL,
    address    text NOT NULL,
    agent      text NOT NULL
);

-- Live grid: one NOTIFY per changed door (payload 'campus/door'), sent on commit by the
-- recorder's own transaction. Why a trigger and not polling: the board hears a change within
-- milliseconds without querying every door for every open screen, and a notification is only
-- sent for committed rows, so the grid never shows what the database does not hold. Each
-- board instance LISTENs on its own connection; the periodic full refresh covers a dropped
-- listener connection. NOTIFY folds identical payloads within one transaction, so a batch of
-- 500 events of one door is one notification.
CREATE OR REPLACE FUNCTION board_notify_door() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('board_door', NEW.campus || '/' || NEW.door);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION board_notify_gap() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('board_door', OLD.campus || '/' || OLD.door);
    ELSE
        PERFORM pg_notify('board_door', NEW.campus || '/' || NEW.door);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER board_doors_changed AFTER INSERT OR UPDATE ON doors
    FOR EACH ROW EXECUTE FUNCTION board_notify_door();
-- No trigger on events: the recorder touches doors.last_seen for every message in the same
-- transaction, so the doors trigger already names every door a batch changed, and the hottest
-- table (events) pays nothing per row for the board.
DROP TRIGGER IF EXISTS board_events_added ON events;
CREATE OR REPLACE TRIGGER board_gaps_changed AFTER INSERT OR UPDATE OR DELETE ON gaps
    FOR EACH ROW EXECUTE FUNCTION board_notify_gap();

CREATE OR REPLACE FUNCTION board_notify_campus() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('board_door', NEW.campus || '/');
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER board_campuses_changed AFTER INSERT OR UPDATE ON campuses
    FOR EACH ROW EXECUTE FUNCTION board_notify_campus();
