//! The provenance of a run: which code, configuration, model, data, seed
//! and machine produced its results. Every run directory holds one
//! (`manifest.json`); a run resumes only under the same manifest, so that
//! results made by different code or settings never mix in one file, and
//! `bench compare` shows where compared runs differ.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::datasets::Item;

/// The schema identifier of a manifest.
pub const MANIFEST_SCHEMA: &str = "metareason.manifest/1";

/// The model a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The name or path given.
    pub name: String,
    /// `llama.cpp` or `openai`.
    pub backend: String,
    /// sha256 of the model file (None for a server's model).
    pub sha256: Option<String>,
    /// The server, for an HTTP backend.
    pub base_url: Option<String>,
}

/// The data a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// The dataset's name or path.
    pub name: String,
    /// Items after the split and the limit.
    pub items: usize,
    /// sha256 of the items (ids, questions, references) in run order.
    pub sha256: String,
    /// `learn` or `test`, when a half was taken.
    pub split: Option<String>,
    /// The limit, when one was set.
    pub limit: Option<usize>,
    /// The field mapping of a local file.
    pub fields: BTreeMap<String, String>,
}

/// Where it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Engine threads asked for (None: all cores).
    pub threads: Option<usize>,
    /// Items solved at once.
    pub jobs: usize,
}

/// Everything that produced a run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`].
    pub schema: String,
    /// The metareason version.
    pub version: String,
    /// The git commit of the working directory, when it is a checkout.
    pub commit: Option<String>,
    /// Whether that checkout had uncommitted changes.
    pub dirty: Option<bool>,
    /// The configuration's name (`full`, a file, with its ablations).
    pub config_name: String,
    /// The resolved configuration, as TOML.
    pub config: String,
    /// The model.
    pub model: ModelRecord,
    /// The data.
    pub dataset: DatasetRecord,
    /// Seed of the subset and of every draw.
    pub seed: u64,
    /// The mission policy: `shipped`, `none` (ablated) or a file with the
    /// sha256 of its text. Runs made before it was recorded used the
    /// shipped policy.
    #[serde(default = "shipped_policy")]
    pub policy: String,
    /// The machine (not part of a run's identity).
    pub machine: MachineRecord,
}

/// The sha256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn shipped_policy() -> String {
    "shipped".into()
}

impl Manifest {
    /// Where this manifest and `other` differ in what decides results
    /// (code, configuration, model, data, seed); empty when a run made under
    /// one may be resumed under the other. The machine is not compared.
    pub fn differences(&self, other: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: &str, a: String, b: String| {
            if a.is_empty() {
                out.push(format!("{what}: {b}"));
            } else if a != b {
                out.push(format!("{what}: {a} → {b}"));
            }
        };
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "unknown".into());
        check("commit", opt(&self.commit), opt(&other.commit));
        check(
            "uncommitted changes",
            format!("{:?}", self.dirty),
            format!("{:?}", other.dirty),
        );
        check("version", self.version.clone(), other.version.clone());
        check(
            "configuration",
            self.config_name.clone(),
            other.config_name.clone(),
        );
        if self.config != other.config {
            check(
                "resolved configuration",
                String::new(),
                first_difference(&self.config, &other.config),
            );
        }
        check("policy", self.policy.clone(), other.policy.clone());
        check("model", self.model.name.clone(), other.model.name.clone());
        check(
            "backend",
            self.model.backend.clone(),
            other.model.backend.clone(),
        );
        check(
            "model sha256",
            opt(&self.model.sha256),
            opt(&other.model.sha256),
        );
        check(
            "server",
            opt(&self.model.base_url),
            opt(&other.model.base_url),
        );
        check(
            "dataset",
            self.dataset.name.clone(),
            other.dataset.name.clone(),
        );
        check(
            "dataset items",
            format!(
                "{} (sha256 {})",
                self.dataset.items,
                short(&self.dataset.sha256)
            ),
            format!(
                "{} (sha256 {})",
                other.dataset.items,
                short(&other.dataset.sha256)
            ),
        );
        check(
            "field mapping",
            format!("{:?}", self.dataset.fields),
            format!("{:?}", other.dataset.fields),
        );
        check("seed", self.seed.to_string(), other.seed.to_string());
        out
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// The first line where two texts differ, for a readable message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut la, mut lb) = (a.lines(), b.lines());
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                return format!(
                    "'{}' → '{}'",
                    x.unwrap_or("(end)").trim(),
                    y.unwrap_or("(end)").trim()
                )
            }
        }
    }
}

/// sha256 of items in run order: their ids, questions and expectations.
pub fn items_sha256(items: &[Item]) -> String {
    let mut h = Sha256::new();
    for it in items {
        h.update(serde_json::to_vec(it).expect("items serialise"));
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::Expected;

    fn manifest() -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA.into(),
            version: "0.1.0".into(),
            commit: Some("abc".into()),
            dirty: Some(false),
            config_name: "full".into(),
            config: "seed = 7\n[solve]\nmax_revisions = 1\n".into(),
            model: ModelRecord {
                name: "m".into(),
                backend: "llama.cpp".into(),
                sha256: Some("00".into()),
                base_url: None,
            },
            dataset: DatasetRecord {
                name: "d".into(),
                items: 2,
                sha256: "11".into(),
                split: None,
                limit: None,
                fields: BTreeMap::new(),
            },
            seed: 7,
            policy: "shipped".into(),
            machine: MachineRecord {
                os: "linux".into(),
                arch: "x86_64".into(),
                cpus: 2,
                threads: None,
                jobs: 1,
            },
        }
    }

    #[test]
    fn a_changed_configuration_model_or_commit_is_a_difference_and_the_machine_is_not() {
        let a = manifest();
        assert!(a.differences(&a).is_empty());
        let mut b = a.clone();
        b.machine.threads = Some(1);
        b.machine.cpus = 8;
        assert!(a.differences(&b).is_empty());
        b.config = "seed = 7\n[solve]\nmax_revisions = 0\n".into();
        b.commit = Some("def".into());
        b.model.sha256 = Some("01".into());
        b.policy = "wide.toml (sha256 22)".into();
        let d = a.differences(&b);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d
            .iter()
            .any(|x| x == "policy: shipped → wide.toml (sha256 22)"));
        assert!(d
            .iter()
            .any(|x| x.contains("max_revisions = 1") && x.contains("max_revisions = 0")));
        assert!(d.iter().any(|x| x.starts_with("commit: abc → def")));
    }

    #[test]
    fn a_manifest_written_before_policies_were_recorded_reads_as_the_shipped_policy() {
        let mut v = serde_json::to_value(manifest()).unwrap();
        v.as_object_mut().unwrap().remove("policy");
        let old: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(old.policy, "shipped");
        assert!(old.differences(&manifest()).is_empty());
    }

    #[test]
    fn the_items_hash_changes_with_any_item_and_with_order() {
        let item = |id: &str| Item {
            id: id.into(),
            question: "q".into(),
            expected: Expected::Decline,
        };
        let a = items_sha256(&[item("1"), item("2")]);
        assert_eq!(a, items_sha256(&[item("1"), item("2")]));
        assert_ne!(a, items_sha256(&[item("2"), item("1")]));
        assert_ne!(a, items_sha256(&[item("1")]));
    }
}
