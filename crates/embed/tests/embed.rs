//! Embedders: unit length, similarity ordering, padding-invariance (MiniLM
//! on its real weights, fetched into the model store on first use).

use metareason_catalog::{ModelStore, NoProgress};
use metareason_core::embed::dot;
use metareason_core::Embedder;
use metareason_embed::{HashingEmbedder, MiniLm};

fn minilm() -> MiniLm {
    let dir = ModelStore::from_env()
        .ensure("all-minilm-l6-v2", &NoProgress)
        .expect("fetch all-MiniLM-L6-v2");
    MiniLm::load(&dir).expect("load all-MiniLM-L6-v2")
}

#[test]
fn hashing_vectors_are_unit_length_and_lexically_similar() {
    let e = HashingEmbedder::default();
    let v = e
        .embed(&[
            "Tom has 3 apples and buys 4 more.",
            "Tom has 5 apples and buys 2 more.",
            "Who wrote the Iliad?",
            "",
        ])
        .unwrap();
    assert_eq!(v.len(), 4);
    for x in &v[..3] {
        assert!((dot(x, x) - 1.0).abs() < 1e-5);
    }
    assert!(
        v[3].iter().all(|x| *x == 0.0),
        "empty text is the zero vector"
    );
    assert!(dot(&v[0], &v[1]) > 0.6);
    assert!(dot(&v[0], &v[2]) < 0.2);
}

#[test]
fn minilm_embeds_meaning_and_padding_does_not_change_a_vector() {
    let m = minilm();
    assert_eq!(m.dim(), 384);
    let texts = [
        "A farmer has 12 cows and sells 5. How many are left?",
        "A rancher owned twelve cattle and sold five of them; how many remain?",
        "What is the capital city of France?",
    ];
    let v = m.embed(&texts).unwrap();
    for x in &v {
        assert_eq!(x.len(), 384);
        assert!((dot(x, x) - 1.0).abs() < 1e-4);
    }
    let same = dot(&v[0], &v[1]);
    let other = dot(&v[0], &v[2]);
    assert!(same > 0.6, "paraphrases: {same}");
    assert!(other < 0.2, "unrelated: {other}");
    // Alone (no padding) and in a batch with a longer text (padded): equal.
    let alone = m.embed_one(texts[2]).unwrap();
    let diff: f32 = alone.iter().zip(&v[2]).map(|(a, b)| (a - b).abs()).sum();
    assert!(diff < 1e-3, "padding changed the vector by {diff}");
    // More texts than a batch, long and short mixed: batched by length
    // inside, returned in the order given.
    let many: Vec<String> = (0..70)
        .map(|i| {
            if i % 3 == 0 {
                format!(
                    "question {i}: {}",
                    "a rather long sentence about farms ".repeat(i % 7 + 1)
                )
            } else {
                format!("short {i}")
            }
        })
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let batched = m.embed(&refs).unwrap();
    for i in [0, 1, 33, 69] {
        let alone = m.embed_one(refs[i]).unwrap();
        let diff: f32 = alone
            .iter()
            .zip(&batched[i])
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(
            diff < 1e-3,
            "text {i} came back as another's vector ({diff})"
        );
    }
}

#[test]
fn minilm_reports_missing_files() {
    let dir = tempfile_dir();
    let err = MiniLm::load(&dir)
        .err()
        .expect("empty dir rejected")
        .to_string();
    assert!(
        err.contains("metareason models fetch all-minilm-l6-v2"),
        "{err}"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("metareason-embed-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
