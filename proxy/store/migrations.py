"""The schema, as a numbered list of SQL steps, and the version table that says how far a
database has come.

At start each backend runs ``pending(version)`` inside one exclusive transaction (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: ``pg_advisory_xact_lock``), so when two processes start at
once the second waits for the first, then finds nothing left to do. Steps are only ever
appended: a released step is never edited. The SQL is portable between both backends.
"""

from __future__ import annotations

__all__ = ["ADVISORY_LOCK", "STEPS", "VERSION_TABLE", "pending"]

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)"

# Any constant the proxy alone uses: PostgreSQL's advisory lock for migrations.
ADVISORY_LOCK = 0x6F6C6C61_6D61  # "ollama"

STEPS: tuple[tuple[str, ...], ...] = (
    (  # 1: usage per hour, stored chat completions with a metadata side table, stored responses
        ("CREATE TABLE usage_hourly (hour BIGINT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,"
        " endpoint TEXT NOT NULL, requests BIGINT NOT NULL DEFAULT 0, errors BIGINT NOT NULL DEFAULT 0,"
        " input_tokens BIGINT NOT NULL DEFAULT 0, output_tokens BIGINT NOT NULL DEFAULT 0,"
        " seconds DOUBLE PRECISION NOT NULL DEFAULT 0, PRIMARY KEY (hour, key_id, model, endpoint))"),
        ("CREATE TABLE chat_completions (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, created BIGINT NOT NULL,"
        " model TEXT NOT NULL, messages TEXT NOT NULL, completion TEXT NOT NULL, metadata TEXT NOT NULL)"),
        "CREATE INDEX chat_completions_by_key ON chat_completions (key_id, created, id)",
        ("CREATE TABLE chat_metadata (id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,"
        " PRIMARY KEY (id, name))"),
        "CREATE INDEX chat_metadata_by_pair ON chat_metadata (name, value)",
        ("CREATE TABLE responses (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, created BIGINT NOT NULL,"
        " data TEXT NOT NULL)"),
        "CREATE INDEX responses_by_created ON responses (created)",
    ),
    (  # 2: usage keeps the model name the client asked for beside the one that served it
        # ([models.aliases]; '' when they are the same): a column of the primary key, so rebuilt
        ("CREATE TABLE usage_hourly_v2 (hour BIGINT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,"
        " endpoint TEXT NOT NULL, requests BIGINT NOT NULL DEFAULT 0, errors BIGINT NOT NULL DEFAULT 0,"
        " input_tokens BIGINT NOT NULL DEFAULT 0, output_tokens BIGINT NOT NULL DEFAULT 0,"
        " seconds DOUBLE PRECISION NOT NULL DEFAULT 0, requested TEXT NOT NULL DEFAULT '',"
        " PRIMARY KEY (hour, key_id, model, endpoint, requested))"),
        ("INSERT INTO usage_hourly_v2 (hour, key_id, model, endpoint, requests, errors, input_tokens,"
        " output_tokens, seconds) SELECT hour, key_id, model, endpoint, requests, errors, input_tokens,"
        " output_tokens, seconds FROM usage_hourly"),
        "DROP TABLE usage_hourly",
        "ALTER TABLE usage_hourly_v2 RENAME TO usage_hourly",
    ),
    (  # 3: the Batch API (proxy/jobs/): uploaded and produced files, batches, one row per line
        ("CREATE TABLE files (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, created BIGINT NOT NULL,"
        " filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes BIGINT NOT NULL, content TEXT NOT NULL)"),
        "CREATE INDEX files_by_key ON files (key_id, created, id)",
        ("CREATE TABLE batches (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, created BIGINT NOT NULL,"
        " status TEXT NOT NULL, lease_until DOUBLE PRECISION NOT NULL DEFAULT 0, data TEXT NOT NULL)"),
        "CREATE INDEX batches_by_key ON batches (key_id, created, id)",
        "CREATE INDEX batches_by_status ON batches (status)",
        # One row per input line; its result is written once (done = 0 → 1), so a line run twice
        # after a crash or a lost lease keeps only the first answer.
        ("CREATE TABLE batch_lines (batch_id TEXT NOT NULL, line BIGINT NOT NULL, custom_id TEXT NOT NULL,"
        " body TEXT NOT NULL, done BIGINT NOT NULL DEFAULT 0, status_code BIGINT NOT NULL DEFAULT 0,"
        " result TEXT, lease_until DOUBLE PRECISION NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '',"
        " PRIMARY KEY (batch_id, line))"),
        "CREATE INDEX batch_lines_pending ON batch_lines (batch_id, done, lease_until)",
    ),
    (  # 4: the ids of usage writes that committed, so a retry after an unclear failure (the
       # connection lost around COMMIT) can tell whether it already counted
        "CREATE TABLE usage_batches (id TEXT PRIMARY KEY, written BIGINT NOT NULL)",
        "CREATE INDEX usage_batches_by_written ON usage_batches (written)",
    ),
)


def pending(version: int) -> list[tuple[int, tuple[str, ...]]]:
    """The steps after ``version``, each with the version it brings the schema to."""
    if version > len(STEPS):
        raise RuntimeError(f"the store's schema (version {version}) is newer than this proxy's "
                           f"({len(STEPS)}); upgrade the proxy")
    return [(n, STEPS[n - 1]) for n in range(version + 1, len(STEPS) + 1)]
