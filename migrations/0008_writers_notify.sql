-- Writers now wake the log's followers themselves, after their commit and at most once per 50 ms
-- (eventstore/notify.py). A NOTIFY sent by this trigger made every appending transaction take one
-- database-wide lock at commit and hold it until the commit was on disk, so concurrent appends queued on it.
DROP TRIGGER events_notify ON events;
DROP FUNCTION events_notify();
