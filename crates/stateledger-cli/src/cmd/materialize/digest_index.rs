//! Files found by content, not by name: every regular file under the directories a user names
//! (`--artifacts`, `--payloads`) is hashed once per digest algorithm asked for, so a recorded
//! digest (`sha256:…`, `sha512:…`, `blake3:…`) finds its file whatever it is called, and a file
//! that carries a recorded name with other content is recognised as a different file.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sha2::Digest as _;

/// Most files indexed under one option's directories.
pub const INDEXED_FILES_MAX: usize = 100_000;
/// Deepest directory walked below a named directory.
const DEPTH_MAX: usize = 64;

/// A digest algorithm the ledger's content digests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
    Blake3,
}

impl Algorithm {
    /// The algorithm of a digest text `<alg>:<hex>`; `None` for anything else (`hmac-sha256`
    /// marks a keyed digest, which no file content can be matched against without the key).
    pub fn of(digest: &str) -> Option<Algorithm> {
        match digest.split_once(':')?.0 {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            "blake3" => Some(Algorithm::Blake3),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
        }
    }
}

/// Hashes a file in chunks (artifacts may be large): `<alg>:<hex>`.
pub fn file_digest(path: &Path, alg: Algorithm) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sha256 = sha2::Sha256::new();
    let mut sha512 = sha2::Sha512::new();
    let mut blake = blake3::Hasher::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        match alg {
            Algorithm::Sha256 => sha256.update(&buf[..n]),
            Algorithm::Sha512 => sha512.update(&buf[..n]),
            Algorithm::Blake3 => {
                blake.update(&buf[..n]);
            }
        }
    }
    let hex = match alg {
        Algorithm::Sha256 => hex::encode(sha256.finalize()),
        Algorithm::Sha512 => hex::encode(sha512.finalize()),
        Algorithm::Blake3 => blake.finalize().to_hex().to_string(),
    };
    Ok(format!("{}:{hex}", alg.name()))
}

/// The digest of `bytes` in the algorithm of `like` (`None` when `like` names no content
/// digest algorithm).
pub fn bytes_digest_like(like: &str, bytes: &[u8]) -> Option<String> {
    stateledger_core::state::replay::digest_like(like, bytes).ok()
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct DigestIndex {
    /// What the index was made from, for messages (`--artifacts`).
    option: &'static str,
    files: Vec<PathBuf>,
    by_digest: HashMap<Algorithm, HashMap<String, PathBuf>>,
}

impl DigestIndex {
    /// Lists the regular files under `dirs` (symbolic links to files followed, to directories
    /// not, so a link cannot make the walk loop). A directory that cannot be read is an error:
    /// the caller named it, and a silently skipped directory would turn into "missing" findings.
    pub fn new(option: &'static str, dirs: &[PathBuf]) -> anyhow::Result<DigestIndex> {
        let mut files = Vec::new();
        for dir in dirs {
            let meta = std::fs::metadata(dir)
                .with_context(|| format!("cannot read {} ({option})", dir.display()))?;
            if !meta.is_dir() {
                bail!(
                    "{} is not a directory ({option} takes directories)",
                    dir.display()
                );
            }
            walk(dir, 0, option, &mut files)?;
        }
        files.sort();
        files.dedup();
        Ok(DigestIndex {
            option,
            files,
            by_digest: HashMap::new(),
        })
    }

    /// No directory was given.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file whose content has `digest`, if any (the first by path when several do).
    pub fn find(&mut self, digest: &str) -> anyhow::Result<Option<PathBuf>> {
        let Some(alg) = Algorithm::of(digest) else {
            return Ok(None);
        };
        if !self.by_digest.contains_key(&alg) {
            let mut map = HashMap::new();
            for f in &self.files {
                let d = file_digest(f, alg).with_context(|| {
                    format!("cannot read {} (under {})", f.display(), self.option)
                })?;
                map.entry(d).or_insert_with(|| f.clone());
            }
            self.by_digest.insert(alg, map);
        }
        Ok(self
            .by_digest
            .get(&alg)
            .and_then(|m| m.get(digest))
            .cloned())
    }

    /// Files whose name is the last component of `name` (`bin/orders` → every `orders`), with
    /// their digest in the algorithm of `like`: what stands where a recorded file was expected.
    pub fn same_name(&self, name: &str, like: &str) -> Vec<(PathBuf, String)> {
        let Some(base) = Path::new(name).file_name() else {
            return Vec::new();
        };
        let Some(alg) = Algorithm::of(like) else {
            return Vec::new();
        };
        let mut out: BTreeMap<PathBuf, String> = BTreeMap::new();
        for f in self.files.iter().filter(|f| f.file_name() == Some(base)) {
            if let Ok(d) = file_digest(f, alg) {
                out.insert(f.clone(), d);
            }
        }
        out.into_iter().collect()
    }
}

fn walk(dir: &Path, depth: usize, option: &str, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if depth > DEPTH_MAX {
        bail!(
            "{} is more than {DEPTH_MAX} directories deep ({option})",
            dir.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .and_then(|rd| rd.map(|e| e.map(|e| e.path())).collect())
        .with_context(|| format!("cannot read {} ({option})", dir.display()))?;
    entries.sort();
    for path in entries {
        let Ok(link) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if link.is_dir() {
            walk(&path, depth + 1, option, out)?;
        } else if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            out.push(path);
            if out.len() > INDEXED_FILES_MAX {
                bail!(
                    "more than {INDEXED_FILES_MAX} files under the {option} directories; name narrower directories"
                );
            }
        }
    }
    Ok(())
}

/// Copies `from` to `to` (a new file, permissions kept) and hashes the copy: `Ok(digest of the
/// copy)`. Checking the copy, not the source, closes the gap between finding a file and using it.
pub fn copy_and_hash(from: &Path, to: &Path, like: Algorithm) -> anyhow::Result<String> {
    if to.exists() {
        bail!(
            "{} already exists (two recorded names map to it)",
            to.display()
        );
    }
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    file_digest(to, like).with_context(|| format!("cannot read back {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_by_content_in_each_algorithm() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/b/renamed.bin"), b"abc").expect("write");
        std::fs::write(dir.path().join("a/orders"), b"other").expect("write");
        let mut index =
            DigestIndex::new("--artifacts", &[dir.path().to_path_buf()]).expect("index");
        let sha = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            index.find(sha).expect("hashed"),
            Some(dir.path().join("a/b/renamed.bin"))
        );
        let blake = format!("blake3:{}", blake3::hash(b"abc").to_hex());
        assert_eq!(
            index.find(&blake).expect("hashed"),
            Some(dir.path().join("a/b/renamed.bin"))
        );
        assert_eq!(
            index.find(&sha.replace("ba78", "0000")).expect("hashed"),
            None
        );
        assert_eq!(
            index.find("hmac-sha256:00").expect("not a content digest"),
            None
        );
        let same = index.same_name("bin/orders", sha);
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].0, dir.path().join("a/orders"));
        assert_eq!(
            same[0].1,
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"other")))
        );
    }

    #[test]
    fn a_named_directory_that_cannot_be_read_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = DigestIndex::new("--payloads", &[dir.path().join("nope")]).expect_err("missing");
        assert!(e.to_string().contains("--payloads"), "{e}");
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        let e = DigestIndex::new("--payloads", &[dir.path().join("file")]).expect_err("a file");
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
