//! Durable memory: round trips, search, concurrency, kills, import/export.

use std::path::Path;
use std::process::Command;

use metareason_memory::{
    Decision, EpisodeRecord, FindingRecord, Memory, MemoryError, MetaEntry, MetaKind, StepRecord,
    StrategyKind, Verdict, VerifierKind,
};

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn episode(task: &str, strategy: &str, emb: &[f32], steps: usize) -> EpisodeRecord {
    EpisodeRecord {
        task: task.into(),
        family: Some("test".into()),
        embedding: Some(unit(emb)),
        embedder: Some("test".into()),
        strategy: Some(strategy.parse().expect("a strategy name")),
        search: "greedy".into(),
        decision: Decision::Answer,
        answer: Some("42".into()),
        confidence: Some(0.75),
        features: Some(serde_json::json!({"agreement": 1.0})),
        outcome: None,
        reference: None,
        generated_tokens: 100,
        prompt_tokens: 50,
        cached_prompt_tokens: 10,
        seconds: 1.5,
        steps: (0..steps)
            .map(|i| StepRecord {
                text: format!("step {i}"),
                reward: 0.5 + i as f64 * 0.1,
            })
            .collect(),
        findings: vec![FindingRecord {
            verifier: VerifierKind::Arithmetic,
            verdict: Verdict::Fail,
            step: Some(1),
            message: "2 + 2 is 4, not 5".into(),
            confidence: 1.0,
        }],
        trace: Some(serde_json::json!({"schema": "metareason.trace/1"})),
    }
}

#[test]
fn an_episode_round_trips_with_steps_findings_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/memory.sqlite");
    let mut m = Memory::open(&path).unwrap();
    assert_eq!(m.schema_version().unwrap(), 1);
    let rec = episode("What is 6 * 7?", "chain_of_thought", &[1.0, 0.0, 0.0], 3);
    let id = m.record(&rec).unwrap();
    m.set_outcome(id, true, Some("42")).unwrap();
    drop(m);
    let m = Memory::open(&path).unwrap();
    let ep = m.episode(id).unwrap();
    assert_eq!(ep.record.steps, rec.steps);
    assert_eq!(ep.record.findings, rec.findings);
    assert_eq!(ep.record.outcome, Some(true));
    assert_eq!(ep.record.reference.as_deref(), Some("42"));
    assert_eq!(ep.record.features, rec.features);
    assert_eq!(ep.record.embedding, rec.embedding);
    assert!(matches!(m.episode(id + 1), Err(MemoryError::NoEpisode(_))));
    assert!(matches!(
        m.set_outcome(999, true, None),
        Err(MemoryError::NoEpisode(999))
    ));
    let stats = m.stats().unwrap();
    assert_eq!(
        (stats.episodes, stats.with_outcome, stats.correct),
        (1, 1, 1)
    );
    assert_eq!(
        stats.by_strategy,
        vec![(StrategyKind::ChainOfThought, 1, 1)]
    );
}

#[test]
fn nearest_finds_the_most_similar_episodes_in_order_and_sees_new_ones() {
    let mut m = Memory::in_memory().unwrap();
    let a = m
        .record(&episode("a", "direct", &[1.0, 0.0, 0.0], 0))
        .unwrap();
    let b = m
        .record(&episode("b", "program_aided", &[0.8, 0.6, 0.0], 0))
        .unwrap();
    let _c = m
        .record(&episode("c", "direct", &[0.0, 0.0, 1.0], 0))
        .unwrap();
    let got = m.nearest(&unit(&[1.0, 0.1, 0.0]), 2).unwrap();
    assert_eq!(got.iter().map(|n| n.id).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(got[1].strategy, Some(StrategyKind::ProgramAided));
    assert!(got[0].similarity > got[1].similarity);
    // Added after the index was loaded, and outcomes given later, are seen.
    let d = m
        .record(&episode("d", "plan_then_solve", &[1.0, 0.1, 0.0], 0))
        .unwrap();
    m.set_outcome(d, false, None).unwrap();
    let got = m.nearest(&unit(&[1.0, 0.1, 0.0]), 1).unwrap();
    assert_eq!((got[0].id, got[0].outcome), (d, Some(false)));
    // A query of another dimension finds nothing rather than nonsense.
    assert!(m.nearest(&[1.0, 0.0], 3).unwrap().is_empty());
}

#[test]
fn parameters_and_meta_buffer_persist() {
    let m = Memory::in_memory().unwrap();
    assert_eq!(m.parameter::<Vec<f64>>("calibration").unwrap(), None);
    m.set_parameter("calibration", &vec![1.0, 2.0]).unwrap();
    m.set_parameter("calibration", &vec![3.0]).unwrap();
    assert_eq!(
        m.parameter::<Vec<f64>>("calibration").unwrap(),
        Some(vec![3.0])
    );
    assert!(matches!(
        m.parameter::<String>("calibration"),
        Err(MemoryError::BadParameter { .. })
    ));
    for (text, v) in [("plan A", [1.0, 0.0]), ("plan B", [0.0, 1.0])] {
        m.add_meta(&MetaEntry {
            id: 0,
            kind: MetaKind::Template,
            episode_id: None,
            task: text.into(),
            text: text.into(),
            embedding: Some(unit(&v)),
            uses: 0,
        })
        .unwrap();
    }
    let got = m
        .nearest_meta(MetaKind::Template, &unit(&[0.9, 0.1]), 5, 0.5)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.text, "plan A");
    assert!(m
        .nearest_meta(MetaKind::ErrorNote, &unit(&[0.9, 0.1]), 5, 0.0)
        .unwrap()
        .is_empty());
    let uses: Vec<u64> = m.meta_entries().unwrap().iter().map(|e| e.uses).collect();
    assert_eq!(uses, vec![1, 0]);
}

#[test]
fn export_then_import_reproduces_the_memory_and_a_bad_line_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Memory::open(dir.path().join("a.sqlite")).unwrap();
    let id = m.record(&episode("t1", "direct", &[1.0, 0.0], 2)).unwrap();
    m.set_outcome(id, false, Some("7")).unwrap();
    m.record(&episode("t2", "program_aided", &[0.0, 1.0], 1))
        .unwrap();
    m.set_parameter("weights", &vec![0.5]).unwrap();
    m.add_meta(&MetaEntry {
        id: 0,
        kind: MetaKind::ErrorNote,
        episode_id: Some(id),
        task: "t1".into(),
        text: "check units".into(),
        embedding: None,
        uses: 2,
    })
    .unwrap();
    let file = dir.path().join("export.jsonl");
    assert_eq!(m.export(&file).unwrap(), 4);

    let mut n = Memory::open(dir.path().join("b.sqlite")).unwrap();
    assert_eq!(n.import(&file).unwrap(), (2, 1, 1));
    let (a, b) = (m.episodes(false).unwrap(), n.episodes(false).unwrap());
    assert_eq!(
        a.iter().map(|e| &e.record).collect::<Vec<_>>(),
        b.iter().map(|e| &e.record).collect::<Vec<_>>()
    );
    assert_eq!(n.episode(b[0].id).unwrap().record.steps.len(), 2);
    assert_eq!(n.parameter::<Vec<f64>>("weights").unwrap(), Some(vec![0.5]));
    let meta = n.meta_entries().unwrap();
    assert_eq!(meta[0].episode_id, Some(b[0].id));
    // The same file again, or a memory's own export: nothing doubles.
    assert_eq!(n.import(&file).unwrap(), (0, 1, 0));
    assert_eq!(m.import(&file).unwrap(), (0, 1, 0));
    assert_eq!(n.episodes(false).unwrap().len(), 2);
    assert_eq!(m.episodes(false).unwrap().len(), 2);
    assert_eq!(n.meta_entries().unwrap().len(), 1);

    let bad = dir.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"type\": \"episode\", \"oops\": 1}\n");
    std::fs::write(&bad, text).unwrap();
    let err = n.import(&bad).unwrap_err();
    assert!(
        matches!(err, MemoryError::BadRecord { line: 5, .. }),
        "{err}"
    );
    assert_eq!(
        n.stats().unwrap().episodes,
        2,
        "nothing of the bad file added"
    );

    n.reset(false).unwrap();
    let s = n.stats().unwrap();
    assert_eq!((s.episodes, s.templates + s.error_notes), (0, 0));
    assert_eq!(s.parameters, vec!["weights".to_string()]);
}

#[test]
fn a_reader_sees_the_last_whole_episode_while_a_writer_is_mid_episode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    let mut writer = Memory::open(&path).unwrap();
    writer
        .record(&episode("first", "respond", &[1.0], 1))
        .unwrap();
    let reader = Memory::open(&path).unwrap();
    let mut seen_during = None;
    writer
        .record_observed(&episode("second", "respond", &[1.0], 3), |i| {
            if i == 1 {
                // The writer holds an open transaction with a partial episode.
                seen_during = Some(reader.stats().unwrap().episodes);
            }
        })
        .unwrap();
    assert_eq!(seen_during, Some(1));
    assert_eq!(reader.stats().unwrap().episodes, 2);
}

#[test]
fn a_file_that_is_not_a_database_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.sqlite");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let msg = Memory::open(&path)
        .err()
        .expect("junk rejected")
        .to_string();
    assert!(msg.contains("not a metareason memory"), "{msg}");
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite");
    drop(Memory::open(&path).unwrap());
    rusqlite_user_version(&path, 99);
    assert!(matches!(
        Memory::open(&path),
        Err(MemoryError::TooNew { found: 99, .. })
    ));
}

fn rusqlite_user_version(path: &Path, v: i64) {
    // The user version is the big-endian u32 at byte 60 of the database
    // header; the last connection closed above checkpointed the WAL.
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(60)).unwrap();
    f.write_all(&(v as u32).to_be_bytes()).unwrap();
}

const CHILD_ENV: &str = "METAREASON_TEST_KILLED_WRITER_DB";

/// Run by `killing_a_writer_mid_episode_leaves_no_partial_episode` in a
/// child process: starts an episode of 50 steps, signals after step 10 and
/// waits to be killed.
#[test]
#[ignore = "helper: run in a child process by the kill test"]
fn child_writer_helper() {
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let db = std::path::PathBuf::from(db);
    let mut m = Memory::open(&db).unwrap();
    let marker = db.with_extension("mid-episode");
    m.record_observed(&episode("doomed", "respond", &[1.0], 50), |i| {
        if i == 10 {
            std::fs::write(&marker, b"1").unwrap();
            loop {
                std::thread::park();
            }
        }
    })
    .unwrap();
}

#[test]
fn killing_a_writer_mid_episode_leaves_no_partial_episode() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.sqlite");
    {
        let mut m = Memory::open(&db).unwrap();
        m.record(&episode("kept", "respond", &[1.0], 2)).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &db)
        .spawn()
        .unwrap();
    let marker = db.with_extension("mid-episode");
    let mut waited = 0;
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child writer ended before the kill: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
        assert!(waited < 6000, "child writer never reached the middle");
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no rollback by the child
    child.wait().unwrap();
    let m = Memory::open(&db).unwrap();
    let s = m.stats().unwrap();
    assert_eq!(s.episodes, 1, "only the committed episode");
    let eps = m.episodes(false).unwrap();
    assert_eq!(eps[0].record.task, "kept");
    assert_eq!(m.episode(eps[0].id).unwrap().record.steps.len(), 2);
    // The file still takes writes.
    let mut m = m;
    m.record(&episode("after", "respond", &[1.0], 1)).unwrap();
    assert_eq!(m.stats().unwrap().episodes, 2);
}

#[test]
fn a_new_memory_file_and_its_directory_are_the_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/metareason/memory.sqlite");
    let mut m = Memory::open(&path).unwrap();
    m.record(&episode("a task", "direct", &[1.0, 0.0], 1))
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = path.with_extension("sqlite-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
}

#[test]
fn a_stored_name_that_is_no_strategy_verifier_or_verdict_is_a_corrupt_row_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    let mut m = Memory::open(&path).unwrap();
    let id = m
        .record(&episode("t", "chain_of_thought", &[1.0, 0.0], 1))
        .unwrap();
    let refused = EpisodeRecord {
        strategy: None,
        decision: Decision::Refuse,
        ..episode("r", "direct", &[0.0, 1.0], 0)
    };
    let none = m.record(&refused).unwrap();
    drop(m);
    let m = Memory::open(&path).unwrap();
    // An episode refused before a strategy was chosen round-trips as none.
    assert_eq!(m.episode(none).unwrap().record.strategy, None);
    drop(m);
    for sql in [
        "UPDATE episodes SET strategy = 'oracle' WHERE id = ?1",
        "UPDATE findings SET verifier = 'oracle' WHERE episode_id = ?1",
        "UPDATE findings SET verdict = 'maybe' WHERE episode_id = ?1",
    ] {
        let backup = std::fs::read(&path).unwrap();
        let db = rusqlite::Connection::open(&path).unwrap();
        assert!(db.execute(sql, [id]).unwrap() > 0, "{sql}");
        drop(db);
        let m = Memory::open(&path).unwrap();
        let e = m.episode(id).unwrap_err().to_string();
        assert!(
            e.contains("oracle") || e.contains("maybe"),
            "{sql}: the error names the bad value: {e}"
        );
        drop(m);
        std::fs::write(&path, backup).unwrap();
    }
}
