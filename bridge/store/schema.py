"""The SQL of the schema's steps: every table the daemon keeps in its SQLite file.

Each constant is the SQL of one step in `bridge.store.migrations`; a step that shipped is never
edited (files carry it already): a change is a new step with new SQL.
"""

from __future__ import annotations

# Version 1: the tables of the first release, exactly as it created them (IF NOT EXISTS, so a
# file that release wrote takes this step without a change).
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    output TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    rule TEXT NOT NULL DEFAULT '',
    event_id INTEGER REFERENCES events(id),
    conversation TEXT,
    retry_ambiguous INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ref TEXT NOT NULL DEFAULT '',
    segments INTEGER NOT NULL DEFAULT 0,
    cost TEXT NOT NULL DEFAULT '0',
    reason TEXT NOT NULL DEFAULT '',
    code TEXT NOT NULL DEFAULT '',
    delivery TEXT NOT NULL DEFAULT '',
    carrier_code TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(output, next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_inflight ON jobs(state) WHERE state = 'sending';
CREATE INDEX IF NOT EXISTS jobs_recipient ON jobs(output, recipient, created_at);
CREATE INDEX IF NOT EXISTS jobs_ref ON jobs(ref, recipient) WHERE ref != '';
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    mobile TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    event_id INTEGER,
    conversation TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    code INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS conversations_mobile ON conversations(mobile, created_at);
CREATE INDEX IF NOT EXISTS conversations_live ON conversations(mobile, expires_at);
CREATE TABLE IF NOT EXISTS group_members (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    group_key TEXT NOT NULL,
    output TEXT NOT NULL,
    recipient TEXT NOT NULL,
    event_id INTEGER NOT NULL REFERENCES events(id),
    flush_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS group_due ON group_members(flush_at);
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY,
    output TEXT NOT NULL,
    recipient TEXT NOT NULL,
    rule TEXT NOT NULL,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS held_recipient ON held(output, recipient, created_at);
CREATE TABLE IF NOT EXISTS raw_polls (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    action TEXT NOT NULL,
    body BLOB NOT NULL,
    received_at REAL NOT NULL,
    processed_at REAL
);
CREATE INDEX IF NOT EXISTS raw_unprocessed ON raw_polls(id) WHERE processed_at IS NULL;
CREATE TABLE IF NOT EXISTS seen_records (
    key TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


# Version 2: replay memory (signatures and nonces an input accepted, kept for their window), and
# the indexes retention needs: it finds what still refers to an event or a job by them, and
# SQLite checks the events foreign keys with them when an event is deleted.
REPLAY_AND_RETENTION = """
CREATE TABLE replay (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX jobs_event ON jobs(event_id);
CREATE INDEX conversations_event ON conversations(event_id);
CREATE INDEX conversations_job ON conversations(job_id);
CREATE INDEX group_members_event ON group_members(event_id);
"""

# Step 3: the inbox (verified deliveries stored before the answer, processed afterwards).
INBOX = """
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'input',
    body BLOB NOT NULL,
    received_at REAL NOT NULL,
    processed_at REAL,
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX inbox_unprocessed ON inbox(id) WHERE processed_at IS NULL;
"""

# Step 4: durable timers (escalation steps, report and acknowledgement timeouts: a row with a due
# time, fired and removed in one transaction), and incidents with the pages sent for them. Ids
# are never reused: a timer's id tells a stale copy from its replacement, and incident numbers
# are what people quote.
TIMERS_AND_INCIDENTS = """
CREATE TABLE timers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    due_at REAL NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    claimed_by TEXT NOT NULL DEFAULT '',
    claimed_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX timers_due ON timers(due_at);
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL,
    group_key TEXT NOT NULL,
    policy TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    event_id INTEGER REFERENCES events(id),
    conversation TEXT,
    alerts INTEGER NOT NULL DEFAULT 1,
    ack_timeout REAL,
    report_timeout REAL NOT NULL,
    final_wait REAL NOT NULL,
    timeline TEXT NOT NULL DEFAULT '[]',
    position INTEGER NOT NULL DEFAULT 0,
    base REAL NOT NULL DEFAULT 0,
    acked_by TEXT NOT NULL DEFAULT '',
    acked_until REAL,
    resolved_by TEXT NOT NULL DEFAULT '',
    opened_at REAL NOT NULL,
    acked_at REAL,
    resolved_at REAL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX incidents_open ON incidents(rule, group_key) WHERE state != 'resolved';
CREATE INDEX incidents_event ON incidents(event_id);
CREATE TABLE incident_pages (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    conversation_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    mobile TEXT NOT NULL,
    code INTEGER NOT NULL,
    position INTEGER NOT NULL,
    step INTEGER NOT NULL,
    pass_index INTEGER NOT NULL,
    job_id INTEGER,
    status TEXT NOT NULL DEFAULT 'pending',
    paged_at REAL NOT NULL
);
CREATE INDEX incident_pages_incident ON incident_pages(incident_id, position);
CREATE INDEX incident_pages_mobile ON incident_pages(mobile, paged_at);
CREATE INDEX incident_pages_job ON incident_pages(job_id) WHERE job_id IS NOT NULL;
"""

# Step 5: history reads (`smsbridge messages --since`, `smsbridge queue`) page by id through an
# index range instead of scanning every job the store keeps.
HISTORY_INDEXES = """
CREATE INDEX jobs_created ON jobs(created_at);
CREATE INDEX jobs_unsettled ON jobs(id) WHERE state IN ('pending', 'sending');
"""

# Step 6: what people did in the web console, for the audit page and for the record.
CONSOLE_AUDIT = """
CREATE TABLE console_audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    person TEXT NOT NULL,  -- not `user`: PostgreSQL reserves it
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    remote TEXT NOT NULL DEFAULT ''
);
"""

# Step 7: bulk sends from a file. Each row of a run (the file's hash and its template) maps to
# the job it queued, so a second run after a crash queues only the rows the first did not; a
# job's rank orders claims: 0 (pages, every rule's SMS) before 1 (bulk sends).
BULK = """
ALTER TABLE jobs ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
CREATE TABLE bulk_rows (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    row INTEGER NOT NULL,
    job_id INTEGER NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (run, row)
);
CREATE INDEX bulk_rows_job ON bulk_rows(job_id);
"""

# Step 8: conversations_live (mobile, expires_at) goes: every query on it also names the mobile,
# and conversations_mobile (mobile, created_at) finds a number's few live rows as well, the
# newest first, as the replies want them. One index fewer to write for every SMS queued.
DROP_REDUNDANT_INDEXES = """
DROP INDEX conversations_live;
"""

# Step 9: several instances on one database. `leases` holds one row per named lease (a gateway
# account's poller, the processor): who holds it, a fencing token that only grows (each new
# holder gets the next one), and when it runs out by the database's clock. `instances` lists the
# daemons that use the store, each with a heartbeat; a job claimed by an instance whose
# heartbeat ran out is taken over by another. `gateway_pace` is each account's rate limit
# schedule, shared by the instances.
INSTANCES_AND_LEASES = """
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    acquired_at REAL NOT NULL,
    renewed_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    listen TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    stopped_at REAL
);
ALTER TABLE jobs ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
CREATE TABLE gateway_pace (
    account TEXT PRIMARY KEY,
    tat REAL NOT NULL
);
"""
