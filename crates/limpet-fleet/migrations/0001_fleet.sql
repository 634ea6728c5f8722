-- The fleet server's schema, one text for SQLite and PostgreSQL: only TEXT and BIGINT
-- columns, times as seconds since the epoch, no engine-specific types or defaults.

-- One row per device: its latest signed report and the sequence number replays are
-- checked against.
CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    running TEXT NOT NULL,
    other TEXT,
    last_outcome TEXT NOT NULL,
    last_release TEXT,
    last_report TEXT NOT NULL,
    last_signature TEXT NOT NULL
);
CREATE INDEX devices_running ON devices (running);

-- Every signed report that changed a device's state, exactly as signed (canonical JSON and
-- signature), so the counts can be audited.
CREATE TABLE reports (
    device TEXT NOT NULL,
    seq BIGINT NOT NULL,
    received BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    release_name TEXT,
    reason TEXT,
    report TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX reports_release ON reports (release_name, received);

CREATE TABLE rollouts (
    release_name TEXT PRIMARY KEY,
    created BIGINT NOT NULL,
    waves TEXT NOT NULL,
    max_hold_secs BIGINT NOT NULL,
    max_failure_bp BIGINT NOT NULL,
    min_reports BIGINT NOT NULL,
    report_deadline_secs BIGINT NOT NULL,
    state TEXT NOT NULL,
    halt_reason TEXT,
    counted_from BIGINT NOT NULL
);

-- Signed holds as sent to devices; a lifted hold is no longer sent.
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    release_name TEXT NOT NULL,
    issued BIGINT NOT NULL,
    until_time BIGINT NOT NULL,
    statement TEXT NOT NULL,
    lifted BIGINT
);
CREATE INDEX holds_release ON holds (release_name);

CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL
);

-- Operator sessions: only the SHA-256 of the cookie's token is stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    expires BIGINT NOT NULL
);
