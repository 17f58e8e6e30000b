//! Schema migrations. The database's `user_version` is the number of
//! migrations applied; each migration runs in its own transaction, so a
//! killed upgrade leaves the previous version intact.

/// Migrations in order; never edit one that has shipped, append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: episodes with their steps and findings, parameters, meta-buffer.
    r#"
    CREATE TABLE episodes (
        id                   INTEGER PRIMARY KEY,
        created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        task                 TEXT NOT NULL,
        family               TEXT,
        embedding            BLOB,
        embedder             TEXT,
        strategy             TEXT NOT NULL,
        search               TEXT NOT NULL,
        decision             TEXT NOT NULL CHECK (decision IN ('answer', 'abstain', 'refuse')),
        answer               TEXT,
        confidence           REAL,
        features             TEXT,
        outcome              INTEGER CHECK (outcome IN (0, 1)),
        reference            TEXT,
        generated_tokens     INTEGER NOT NULL DEFAULT 0,
        prompt_tokens        INTEGER NOT NULL DEFAULT 0,
        cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
        seconds              REAL NOT NULL DEFAULT 0,
        trace                TEXT
    );
    CREATE INDEX episodes_strategy ON episodes(strategy);
    CREATE TABLE steps (
        episode_id INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
        idx        INTEGER NOT NULL,
        text       TEXT NOT NULL,
        reward     REAL NOT NULL,
        PRIMARY KEY (episode_id, idx)
    );
    CREATE TABLE findings (
        episode_id INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
        idx        INTEGER NOT NULL,
        verifier   TEXT NOT NULL,
        verdict    TEXT NOT NULL,
        step       INTEGER,
        message    TEXT NOT NULL,
        confidence REAL NOT NULL,
        PRIMARY KEY (episode_id, idx)
    );
    CREATE TABLE parameters (
        name       TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE meta_buffer (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('template', 'error_note')),
        episode_id INTEGER REFERENCES episodes(id) ON DELETE SET NULL,
        task       TEXT NOT NULL,
        text       TEXT NOT NULL,
        embedding  BLOB,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        uses       INTEGER NOT NULL DEFAULT 0
    );
    "#,
];
