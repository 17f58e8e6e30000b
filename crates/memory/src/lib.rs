//! Durable memory: every episode (task, strategy, steps with rewards,
//! findings, answer, confidence, outcome, cost), the parameters of the
//! internal view I and external view E, and the meta-buffer of thought
//! templates and error notes — in one SQLite file.
//!
//! The file is opened in WAL mode, so readers and one writer work at once;
//! an episode is written in one transaction, so it is stored whole or not at
//! all, also when the process is killed. The schema is versioned and
//! migrated on open.
//!
//! Nearest-neighbour search is exact (cosine over L2-normalised vectors)
//! over an in-memory copy of the embeddings that is loaded once and extended
//! with new rows on each search.
#![deny(missing_docs)]

mod schema;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use metareason_core::{
    Decision, Grounds, StrategyKind, UnknownDecision, Verdict, VerifierKind,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// SQLite reported an error.
    #[error("memory database {path}: {source}{hint}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The underlying error.
        source: rusqlite::Error,
        /// What the user can do about it.
        hint: &'static str,
    },
    /// The file was written by a newer metareason.
    #[error("memory database {path} has schema version {found}, newer than this metareason understands ({known}); upgrade metareason or use another --memory file")]
    TooNew {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
        /// The newest version known here.
        known: i64,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of an import file is not a memory record.
    #[error("{path}:{line}: not a memory record: {message}")]
    BadRecord {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No episode has this id.
    #[error("no episode {0} in memory; `metareason memory stats` shows the range of ids")]
    NoEpisode(i64),
    /// A stored value is not the JSON its reader expects.
    #[error("stored parameter {name} is unreadable ({message}); `metareason memory reset --parameters` restores the defaults")]
    BadParameter {
        /// The parameter.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// One scored reasoning step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's text.
    pub text: String,
    /// Its reward Q_t.
    pub reward: f64,
}

/// One verifier finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Which verifier.
    pub verifier: VerifierKind,
    /// `pass` or `fail`.
    pub verdict: Verdict,
    /// The step it concerns.
    pub step: Option<usize>,
    /// What it found.
    pub message: String,
    /// How sure it is.
    pub confidence: f64,
}

/// An episode as written; the database assigns its id and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRecord {
    /// The task text.
    pub task: String,
    /// An optional label of the task's family (a dataset name, a user tag).
    pub family: Option<String>,
    /// The task's embedding (L2-normalised).
    pub embedding: Option<Vec<f32>>,
    /// Which embedder produced it.
    pub embedder: Option<String>,
    /// The strategy that answered (or would have); none when the request
    /// was refused or declined before a strategy was chosen (stored as
    /// `none`).
    pub strategy: Option<StrategyKind>,
    /// The search policy.
    pub search: String,
    /// Answer, abstain or refuse.
    pub decision: Decision,
    /// The answer, normalised.
    pub answer: Option<String>,
    /// P(correct) of the answer.
    pub confidence: Option<f64>,
    /// The features behind the confidence and the decision.
    pub features: Option<serde_json::Value>,
    /// Whether the answer was right, once known.
    pub outcome: Option<bool>,
    /// The reference answer, when one is known.
    pub reference: Option<String>,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: u64,
    /// Prompt tokens re-used from the cache.
    pub cached_prompt_tokens: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The chosen reasoning steps with rewards.
    pub steps: Vec<StepRecord>,
    /// Verifier findings.
    pub findings: Vec<FindingRecord>,
    /// The whole trace as JSON.
    pub trace: Option<serde_json::Value>,
}

/// A stored episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Its id.
    pub id: i64,
    /// When it was stored (UTC, RFC 3339).
    pub created_at: String,
    /// What was stored.
    #[serde(flatten)]
    pub record: EpisodeRecord,
}

/// Kinds of meta-buffer entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaKind {
    /// A reusable plan distilled from a solved task.
    Template,
    /// A warning distilled from a failed task.
    ErrorNote,
}

impl MetaKind {
    fn as_str(self) -> &'static str {
        match self {
            MetaKind::Template => "template",
            MetaKind::ErrorNote => "error_note",
        }
    }
    fn parse(s: &str) -> MetaKind {
        if s == "template" {
            MetaKind::Template
        } else {
            MetaKind::ErrorNote
        }
    }
}

/// A meta-buffer entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaEntry {
    /// Its id (0 before it is stored).
    pub id: i64,
    /// Template or error note.
    pub kind: MetaKind,
    /// The episode it came from.
    pub episode_id: Option<i64>,
    /// The task it came from.
    pub task: String,
    /// The template or note.
    pub text: String,
    /// The embedding of `task`.
    pub embedding: Option<Vec<f32>>,
    /// How often it was handed to a later task.
    pub uses: u64,
}

/// A nearest neighbour found in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The episode.
    pub id: i64,
    /// Cosine similarity to the query.
    pub similarity: f32,
    /// Its strategy (none when it was refused or declined before one was chosen).
    pub strategy: Option<StrategyKind>,
    /// Its outcome, when known.
    pub outcome: Option<bool>,
}

/// Counts for `metareason memory stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The database file.
    pub path: String,
    /// Schema version.
    pub schema_version: i64,
    /// Episodes stored.
    pub episodes: u64,
    /// Episodes with a known outcome.
    pub with_outcome: u64,
    /// Of those, correct.
    pub correct: u64,
    /// Episodes by decision.
    pub by_decision: Vec<(String, u64)>,
    /// Per strategy: episodes with outcome, correct.
    pub by_strategy: Vec<(StrategyKind, u64, u64)>,
    /// Thought templates.
    pub templates: u64,
    /// Error notes.
    pub error_notes: u64,
    /// Stored parameters by name.
    pub parameters: Vec<String>,
    /// Lowest and highest episode id.
    pub id_range: Option<(i64, i64)>,
}

/// One line of an export file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// An episode.
    Episode(Box<Episode>),
    /// A parameter.
    Parameter {
        /// Its name.
        name: String,
        /// Its value.
        value: serde_json::Value,
    },
    /// A meta-buffer entry.
    Meta(MetaEntry),
}

/// Embeddings held in memory for exact search.
#[derive(Default)]
struct Index {
    ids: Vec<i64>,
    dims: usize,
    vectors: Vec<f32>,
    strategies: Vec<u32>,
    strategy_names: Vec<Option<StrategyKind>>,
    /// Highest episode id loaded.
    high: i64,
}

/// The memory database.
pub struct Memory {
    conn: Connection,
    path: PathBuf,
    index: RefCell<Index>,
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Memory {
    /// The default file: `memory.sqlite` in metareason's directory under the
    /// user data directory (`~/.local/share/metareason` on Linux), or
    /// `METAREASON_MEMORY` when set.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("METAREASON_MEMORY") {
            return PathBuf::from(p);
        }
        dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("metareason")
            .join("memory.sqlite")
    }

    /// Opens (creating when absent) the database at `path` and migrates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MemoryError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = path.as_ref().to_path_buf();
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| MemoryError::Io { path: p, source }
        };
        // Episodes hold the user's tasks and answers: a new directory is
        // the user's alone (0700), a new database file too (0600; SQLite
        // gives its -wal and -shm files the same mode).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                if let Some(up) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(up).map_err(io(up))?;
                }
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(io(dir))?;
            }
        }
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map(drop)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .map_err(io(&path))?;
        }
        let conn = Connection::open(&path).map_err(|e| sql_err(&path, e))?;
        Self::from_connection(conn, path)
    }

    /// A private database in memory (tests, dry runs).
    pub fn in_memory() -> Result<Self, MemoryError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| sql_err(&path, e))?;
        Self::from_connection(conn, path)
    }

    /// Configures and migrates a fresh connection.
    fn from_connection(conn: Connection, path: PathBuf) -> Result<Self, MemoryError> {
        let mut memory = Self {
            conn,
            path,
            index: RefCell::new(Index::default()),
        };
        memory.configure()?;
        memory.migrate()?;
        // A memory that cannot be written fails here, before a solve whose
        // episode it could not store.
        memory
            .conn
            .execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(|e| memory.err(e))?;
        Ok(memory)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> MemoryError {
        sql_err(&self.path, e)
    }

    fn configure(&self) -> Result<(), MemoryError> {
        // WAL: readers never block the writer nor see half an episode.
        // synchronous=NORMAL is durable against process kills in WAL mode.
        self.conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(|e| self.err(e))?;
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.err(e))?;
        self.conn
            .busy_timeout(Duration::from_secs(30))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), MemoryError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let known = schema::MIGRATIONS.len() as i64;
        if version > known {
            return Err(MemoryError::TooNew {
                path: self.path.display().to_string(),
                found: version,
                known,
            });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            let path = self.path.clone();
            let tx = self.conn.transaction().map_err(|e| sql_err(&path, e))?;
            tx.execute_batch(sql).map_err(|e| sql_err(&path, e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| sql_err(&path, e))?;
            tx.commit().map_err(|e| sql_err(&path, e))?;
        }
        Ok(())
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, MemoryError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Stores an episode whole (one transaction) and returns its id.
    pub fn record(&mut self, episode: &EpisodeRecord) -> Result<i64, MemoryError> {
        self.record_observed(episode, |_| {})
    }

    /// [`Memory::record`] with a callback after each step row is written,
    /// inside the open transaction. It exists so that tests can kill a
    /// writer in the middle of an episode.
    #[doc(hidden)]
    pub fn record_observed(
        &mut self,
        episode: &EpisodeRecord,
        mut after_step: impl FnMut(usize),
    ) -> Result<i64, MemoryError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql_err(&path, e))?;
        let id = insert_episode(&tx, episode, None).map_err(|e| sql_err(&path, e))?;
        for (i, s) in episode.steps.iter().enumerate() {
            tx.execute(
                "INSERT INTO steps (episode_id, idx, text, reward) VALUES (?1, ?2, ?3, ?4)",
                params![id, i as i64, s.text, s.reward],
            )
            .map_err(|e| sql_err(&path, e))?;
            after_step(i);
        }
        insert_findings(&tx, id, &episode.findings).map_err(|e| sql_err(&path, e))?;
        tx.commit().map_err(|e| sql_err(&path, e))?;
        Ok(id)
    }

    /// Records the outcome of an episode (and the reference answer when
    /// given).
    pub fn set_outcome(
        &self,
        id: i64,
        correct: bool,
        reference: Option<&str>,
    ) -> Result<(), MemoryError> {
        let n = self
            .conn
            .execute(
                "UPDATE episodes SET outcome = ?2, reference = COALESCE(?3, reference) WHERE id = ?1",
                params![id, correct as i64, reference],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(MemoryError::NoEpisode(id));
        }
        Ok(())
    }

    /// One episode, with its steps and findings.
    pub fn episode(&self, id: i64) -> Result<Episode, MemoryError> {
        let mut ep = self
            .conn
            .query_row(
                &format!("SELECT {EPISODE_COLUMNS} FROM episodes WHERE id = ?1"),
                params![id],
                row_to_episode,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(MemoryError::NoEpisode(id))?;
        self.fill_children(&mut ep)?;
        Ok(ep)
    }

    fn fill_children(&self, ep: &mut Episode) -> Result<(), MemoryError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT text, reward FROM steps WHERE episode_id = ?1 ORDER BY idx")
            .map_err(|e| self.err(e))?;
        ep.record.steps = st
            .query_map(params![ep.id], |r| {
                Ok(StepRecord {
                    text: r.get(0)?,
                    reward: r.get(1)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT verifier, verdict, step, message, confidence FROM findings \
                 WHERE episode_id = ?1 ORDER BY idx",
            )
            .map_err(|e| self.err(e))?;
        ep.record.findings = st
            .query_map(params![ep.id], |r| {
                Ok(FindingRecord {
                    verifier: named(r, 0)?,
                    verdict: named(r, 1)?,
                    step: r.get::<_, Option<i64>>(2)?.map(|s| s as usize),
                    message: r.get(3)?,
                    confidence: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Episodes in id order, optionally only those with a known outcome,
    /// without steps and findings (use [`Memory::episode`] for those).
    pub fn episodes(&self, with_outcome_only: bool) -> Result<Vec<Episode>, MemoryError> {
        let sql = format!(
            "SELECT {EPISODE_COLUMNS} FROM episodes {} ORDER BY id",
            if with_outcome_only {
                "WHERE outcome IS NOT NULL"
            } else {
                ""
            }
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], row_to_episode)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The last `n` episodes, newest first (without steps and findings).
    pub fn recent(&self, n: usize) -> Result<Vec<Episode>, MemoryError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {EPISODE_COLUMNS} FROM episodes ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![n as i64], row_to_episode)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Outcome counts per strategy: (strategy, with outcome, correct).
    pub fn strategy_counts(&self) -> Result<Vec<(StrategyKind, u64, u64)>, MemoryError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT strategy, COUNT(*), SUM(outcome) FROM episodes \
                 WHERE outcome IS NOT NULL AND decision = 'answer' GROUP BY strategy ORDER BY strategy",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    strategy_column(r, 0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n, k)| Some((s?, n, k)))
            .collect())
    }

    /// Loads embeddings stored since the last search into the in-memory index.
    fn refresh_index(&self) -> Result<(), MemoryError> {
        let mut index = self.index.borrow_mut();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, embedding, strategy FROM episodes \
                 WHERE id > ?1 AND embedding IS NOT NULL ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query(params![index.high]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let id: i64 = r.get(0).map_err(|e| self.err(e))?;
            let blob: Vec<u8> = r.get(1).map_err(|e| self.err(e))?;
            let strategy = strategy_column(r, 2).map_err(|e| self.err(e))?;
            let v = from_blob(&blob);
            index.high = index.high.max(id);
            if index.dims == 0 {
                index.dims = v.len();
            }
            if v.len() != index.dims {
                // Written by another embedder: not comparable, skipped.
                continue;
            }
            let s = match index.strategy_names.iter().position(|n| *n == strategy) {
                Some(s) => s,
                None => {
                    index.strategy_names.push(strategy);
                    index.strategy_names.len() - 1
                }
            } as u32;
            index.ids.push(id);
            index.vectors.extend_from_slice(&v);
            index.strategies.push(s);
        }
        Ok(())
    }

    /// The `k` stored episodes most similar to `query` (exact cosine
    /// similarity; vectors are stored normalised), most similar first.
    /// Outcomes are read fresh, so feedback given since is seen.
    pub fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, MemoryError> {
        self.refresh_index()?;
        let index = self.index.borrow();
        if index.dims != query.len() || k == 0 {
            return Ok(Vec::new());
        }
        let mut scored: Vec<(f32, usize)> = index
            .vectors
            .chunks_exact(index.dims)
            .enumerate()
            .map(|(i, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        let k = k.min(scored.len());
        if k < scored.len() {
            scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(k);
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut st = self
            .conn
            .prepare_cached("SELECT outcome FROM episodes WHERE id = ?1")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(k);
        for (sim, i) in scored {
            let id = index.ids[i];
            let outcome: Option<Option<i64>> = st
                .query_row(params![id], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?;
            let Some(outcome) = outcome else { continue }; // deleted since
            out.push(Neighbour {
                id,
                similarity: sim,
                strategy: index.strategy_names[index.strategies[i] as usize],
                outcome: outcome.map(|o| o != 0),
            });
        }
        Ok(out)
    }

    /// Number of embeddings in the search index (after loading new ones).
    pub fn indexed(&self) -> Result<usize, MemoryError> {
        self.refresh_index()?;
        Ok(self.index.borrow().ids.len())
    }

    /// A stored parameter, when there is one.
    pub fn parameter<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, MemoryError> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM parameters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        v.map(|s| {
            serde_json::from_str(&s).map_err(|e| MemoryError::BadParameter {
                name: name.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// Stores a parameter (replacing the old value).
    pub fn set_parameter<T: Serialize>(&self, name: &str, value: &T) -> Result<(), MemoryError> {
        let json = serde_json::to_string(value).expect("parameters serialise");
        self.conn
            .execute(
                "INSERT INTO parameters (name, value) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                params![name, json],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Deletes the meta-buffer entries distilled from episode `id` (when
    /// its verdict changes, what was learned from the old one goes).
    pub fn delete_meta_of_episode(&self, id: i64) -> Result<usize, MemoryError> {
        self.conn
            .execute("DELETE FROM meta_buffer WHERE episode_id = ?1", params![id])
            .map_err(|e| self.err(e))
    }

    /// Adds a meta-buffer entry and returns its id.
    pub fn add_meta(&self, entry: &MetaEntry) -> Result<i64, MemoryError> {
        self.conn
            .execute(
                "INSERT INTO meta_buffer (kind, episode_id, task, text, embedding, uses) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    entry.kind.as_str(),
                    entry.episode_id,
                    entry.task,
                    entry.text,
                    entry.embedding.as_deref().map(to_blob),
                    entry.uses as i64
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// All meta-buffer entries.
    pub fn meta_entries(&self) -> Result<Vec<MetaEntry>, MemoryError> {
        let mut st = self
            .conn
            .prepare("SELECT id, kind, episode_id, task, text, embedding, uses FROM meta_buffer ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(MetaEntry {
                    id: r.get(0)?,
                    kind: MetaKind::parse(&r.get::<_, String>(1)?),
                    episode_id: r.get(2)?,
                    task: r.get(3)?,
                    text: r.get(4)?,
                    embedding: r.get::<_, Option<Vec<u8>>>(5)?.map(|b| from_blob(&b)),
                    uses: r.get::<_, i64>(6)? as u64,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The `k` entries of `kind` whose task is most similar to `query`
    /// (similarity at least `min_similarity`), most similar first; their use
    /// counts go up by one.
    pub fn nearest_meta(
        &self,
        kind: MetaKind,
        query: &[f32],
        k: usize,
        min_similarity: f32,
    ) -> Result<Vec<(MetaEntry, f32)>, MemoryError> {
        let mut scored: Vec<(MetaEntry, f32)> = self
            .meta_entries()?
            .into_iter()
            .filter(|e| e.kind == kind)
            .filter_map(|e| {
                let s = e
                    .embedding
                    .as_ref()
                    .filter(|v| v.len() == query.len())
                    .map(|v| v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>())?;
                (s >= min_similarity).then_some((e, s))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        for (e, _) in &scored {
            self.conn
                .execute(
                    "UPDATE meta_buffer SET uses = uses + 1 WHERE id = ?1",
                    params![e.id],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(scored)
    }

    /// Counts for a summary.
    pub fn stats(&self) -> Result<Stats, MemoryError> {
        let count = |sql: &str| -> Result<u64, MemoryError> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
                .map(|v| v.unwrap_or(0) as u64)
                .map_err(|e| self.err(e))
        };
        let mut st = self
            .conn
            .prepare("SELECT decision, COUNT(*) FROM episodes GROUP BY decision ORDER BY decision")
            .map_err(|e| self.err(e))?;
        let by_decision = st
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        let mut st = self
            .conn
            .prepare("SELECT name FROM parameters ORDER BY name")
            .map_err(|e| self.err(e))?;
        let parameters = st
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
            .map_err(|e| self.err(e))?;
        let id_range = self
            .conn
            .query_row("SELECT MIN(id), MAX(id) FROM episodes", [], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .map_err(|e| self.err(e))?;
        Ok(Stats {
            path: self.path.display().to_string(),
            schema_version: self.schema_version()?,
            episodes: count("SELECT COUNT(*) FROM episodes")?,
            with_outcome: count("SELECT COUNT(*) FROM episodes WHERE outcome IS NOT NULL")?,
            correct: count("SELECT SUM(outcome) FROM episodes")?,
            by_decision,
            by_strategy: self.strategy_counts()?,
            templates: count("SELECT COUNT(*) FROM meta_buffer WHERE kind = 'template'")?,
            error_notes: count("SELECT COUNT(*) FROM meta_buffer WHERE kind = 'error_note'")?,
            parameters,
            id_range: match id_range {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
        })
    }

    /// Writes everything as JSONL (episodes with steps and findings,
    /// parameters, meta-buffer) to `path`, through a temporary file renamed
    /// into place. Returns the number of lines.
    pub fn export(&self, path: &Path) -> Result<usize, MemoryError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.partial",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "export".into())
        ));
        let result = self.export_via(path, &tmp);
        if result.is_err() {
            // Nothing half-written stays behind.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn export_via(&self, path: &Path, tmp: &Path) -> Result<usize, MemoryError> {
        let io = |source| MemoryError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(tmp).map_err(io)?);
        let mut lines = 0;
        let mut write = |line: &ExportLine| -> Result<(), MemoryError> {
            // A full disk surfaces here (serde_json writes through): an
            // error, never a panic.
            serde_json::to_writer(&mut out, line).map_err(|e| io(std::io::Error::other(e)))?;
            out.write_all(b"\n").map_err(io)?;
            lines += 1;
            Ok(())
        };
        for mut ep in self.episodes(false)? {
            self.fill_children(&mut ep)?;
            write(&ExportLine::Episode(Box::new(ep)))?;
        }
        let mut st = self
            .conn
            .prepare("SELECT name, value FROM parameters ORDER BY name")
            .map_err(|e| self.err(e))?;
        let params_rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        for (name, value) in params_rows {
            let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            write(&ExportLine::Parameter { name, value })?;
        }
        for m in self.meta_entries()? {
            write(&ExportLine::Meta(m))?;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(tmp, path).map_err(io)?;
        Ok(lines)
    }

    /// Adds the records of an export file, all in one transaction (a bad
    /// line changes nothing). Episodes get new ids; meta entries follow
    /// their episodes. Returns (episodes, parameters, meta entries) added.
    pub fn import(&mut self, path: &Path) -> Result<(usize, usize, usize), MemoryError> {
        let file = std::fs::File::open(path).map_err(|source| MemoryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut lines = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| MemoryError::Io {
                path: path.display().to_string(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: ExportLine =
                serde_json::from_str(&line).map_err(|e| MemoryError::BadRecord {
                    path: path.display().to_string(),
                    line: i + 1,
                    message: e.to_string(),
                })?;
            lines.push(rec);
        }
        let db = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql_err(&db, e))?;
        let mut ids = HashMap::new();
        let (mut e, mut p, mut m) = (0, 0, 0);
        for rec in lines {
            match rec {
                ExportLine::Episode(ep) => {
                    // An episode already here (the same task stored at the
                    // same instant: importing a memory's own export, or a
                    // file twice) is not stored again.
                    let existing: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM episodes WHERE created_at = ?1 AND task = ?2",
                            params![ep.created_at, ep.record.task],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(|x| sql_err(&db, x))?;
                    if let Some(id) = existing {
                        ids.insert(ep.id, id);
                        continue;
                    }
                    let id = insert_episode(&tx, &ep.record, Some(&ep.created_at))
                        .map_err(|x| sql_err(&db, x))?;
                    for (i, s) in ep.record.steps.iter().enumerate() {
                        tx.execute(
                            "INSERT INTO steps (episode_id, idx, text, reward) VALUES (?1, ?2, ?3, ?4)",
                            params![id, i as i64, s.text, s.reward],
                        )
                        .map_err(|x| sql_err(&db, x))?;
                    }
                    insert_findings(&tx, id, &ep.record.findings).map_err(|x| sql_err(&db, x))?;
                    ids.insert(ep.id, id);
                    e += 1;
                }
                ExportLine::Parameter { name, value } => {
                    tx.execute(
                        "INSERT INTO parameters (name, value) VALUES (?1, ?2) \
                         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        params![name, value.to_string()],
                    )
                    .map_err(|x| sql_err(&db, x))?;
                    p += 1;
                }
                ExportLine::Meta(entry) => {
                    let present: bool = tx
                        .query_row(
                            "SELECT EXISTS(SELECT 1 FROM meta_buffer WHERE kind = ?1 AND task IS ?2 AND text = ?3)",
                            params![entry.kind.as_str(), entry.task, entry.text],
                            |r| r.get(0),
                        )
                        .map_err(|x| sql_err(&db, x))?;
                    if present {
                        continue;
                    }
                    tx.execute(
                        "INSERT INTO meta_buffer (kind, episode_id, task, text, embedding, uses) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            entry.kind.as_str(),
                            entry.episode_id.and_then(|old| ids.get(&old).copied()),
                            entry.task,
                            entry.text,
                            entry.embedding.as_deref().map(to_blob),
                            entry.uses as i64
                        ],
                    )
                    .map_err(|x| sql_err(&db, x))?;
                    m += 1;
                }
            }
        }
        tx.commit().map_err(|x| sql_err(&db, x))?;
        Ok((e, p, m))
    }

    /// Deletes episodes and the meta-buffer (and, when `parameters`, the
    /// learned parameters too), in one transaction.
    pub fn reset(&mut self, parameters: bool) -> Result<(), MemoryError> {
        let db = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql_err(&db, e))?;
        tx.execute_batch(
            "DELETE FROM meta_buffer; DELETE FROM findings; DELETE FROM steps; DELETE FROM episodes;",
        )
        .map_err(|e| sql_err(&db, e))?;
        if parameters {
            tx.execute("DELETE FROM parameters", [])
                .map_err(|e| sql_err(&db, e))?;
        }
        tx.commit().map_err(|e| sql_err(&db, e))?;
        *self.index.borrow_mut() = Index::default();
        Ok(())
    }
}

const EPISODE_COLUMNS: &str =
    "id, created_at, task, family, embedding, embedder, strategy, search, \
     decision, answer, confidence, features, outcome, reference, generated_tokens, prompt_tokens, \
     cached_prompt_tokens, seconds, trace";

/// A column that holds one of a closed set of names (a strategy, a
/// decision, a verifier, a verdict): a name that is none of them makes the
/// row corrupt instead of becoming a default.
fn named<T>(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, String>(column)?.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// How an episode without a strategy stores it.
const NO_STRATEGY: &str = "none";

/// The strategy column: `none` or a strategy's name.
fn strategy_column(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<StrategyKind>> {
    if r.get_ref(column)?.as_str().ok() == Some(NO_STRATEGY) {
        return Ok(None);
    }
    named(r, column).map(Some)
}

fn row_to_episode(r: &rusqlite::Row<'_>) -> rusqlite::Result<Episode> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(Episode {
        id: r.get(0)?,
        created_at: r.get(1)?,
        record: EpisodeRecord {
            task: r.get(2)?,
            family: r.get(3)?,
            embedding: r.get::<_, Option<Vec<u8>>>(4)?.map(|b| from_blob(&b)),
            embedder: r.get(5)?,
            strategy: strategy_column(r, 6)?,
            search: r.get(7)?,
            // A stored decision that is none of the three is a corrupt row,
            // not an answer.
            decision: named(r, 8)?,
            answer: r.get(9)?,
            confidence: r.get(10)?,
            features: json(r.get(11)?),
            outcome: r.get::<_, Option<i64>>(12)?.map(|o| o != 0),
            reference: r.get(13)?,
            generated_tokens: r.get::<_, i64>(14)? as u64,
            prompt_tokens: r.get::<_, i64>(15)? as u64,
            cached_prompt_tokens: r.get::<_, i64>(16)? as u64,
            seconds: r.get(17)?,
            steps: Vec::new(),
            findings: Vec::new(),
            trace: json(r.get(18)?),
        },
    })
}

fn insert_episode(
    tx: &Transaction<'_>,
    e: &EpisodeRecord,
    created_at: Option<&str>,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO episodes (created_at, task, family, embedding, embedder, strategy, search, decision, \
         answer, confidence, features, outcome, reference, generated_tokens, prompt_tokens, \
         cached_prompt_tokens, seconds, trace) VALUES \
         (COALESCE(?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
         ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            created_at,
            e.task,
            e.family,
            e.embedding.as_deref().map(to_blob),
            e.embedder,
            e.strategy.map_or(NO_STRATEGY, StrategyKind::name),
            e.search,
            e.decision.name(),
            e.answer,
            e.confidence,
            e.features.as_ref().map(|f| f.to_string()),
            e.outcome.map(|o| o as i64),
            e.reference,
            e.generated_tokens as i64,
            e.prompt_tokens as i64,
            e.cached_prompt_tokens as i64,
            e.seconds,
            e.trace.as_ref().map(|t| t.to_string()),
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn insert_findings(
    tx: &Transaction<'_>,
    id: i64,
    findings: &[FindingRecord],
) -> rusqlite::Result<()> {
    for (i, f) in findings.iter().enumerate() {
        tx.execute(
            "INSERT INTO findings (episode_id, idx, verifier, verdict, step, message, confidence) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                i as i64,
                f.verifier.name(),
                f.verdict.name(),
                f.step.map(|s| s as i64),
                f.message,
                f.confidence
            ],
        )?;
    }
    Ok(())
}

fn sql_err(path: &Path, source: rusqlite::Error) -> MemoryError {
    use rusqlite::ffi::ErrorCode;
    let hint = match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => {
            " — the disk is full; free space and retry (nothing stored was lost)"
        }
        Some(ErrorCode::NotADatabase) => {
            " — the file is not a metareason memory; pass another path with --memory"
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            " — the file is damaged; restore it from `metareason memory export` or move it away"
        }
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::PermissionDenied)
        | Some(ErrorCode::CannotOpen) => {
            " — check that the file and its directory are writable, or pass --memory"
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            " — another process holds the database; retry when it is done"
        }
        _ => "",
    };
    MemoryError::Sqlite {
        path: path.display().to_string(),
        source,
        hint,
    }
}
