-- PostgreSQL's 0018 makes its statement-level link trigger read each event by its key. The
-- SQLite trigger of 0016 is per row and already does (`WHERE e.id = NEW.event_id`): nothing to
-- change, kept so that both backends number their migrations alike.
SELECT 1;
