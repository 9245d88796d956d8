//! The directory `materialize` writes: new or empty when it starts, and every path inside it
//! derived from recorded names in a way that cannot leave it. Names come from records, and a
//! record's writer controls them: `../../etc/passwd` as an artifact name must land inside the
//! directory like any other name.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};

/// See the module comment.
#[derive(Debug)]
pub struct OutDir {
    root: PathBuf,
}

impl OutDir {
    /// Makes sure `path` can be written: it does not exist yet, or is an empty directory.
    /// Nothing is created (so a run that cannot start leaves nothing behind).
    pub fn check_usable(path: &Path) -> anyhow::Result<()> {
        match std::fs::read_dir(path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    bail!(
                        "{} is not empty; give --out a new or empty directory (materialize never overwrites)",
                        path.display()
                    );
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot use {} as --out", path.display())),
        }
    }

    /// Creates the directory (checked with [`OutDir::check_usable`] first).
    pub fn create(path: &Path) -> anyhow::Result<OutDir> {
        OutDir::check_usable(path)?;
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {} (--out)", path.display()))?;
        let root = path
            .canonicalize()
            .with_context(|| format!("cannot resolve {} (--out)", path.display()))?;
        Ok(OutDir { root })
    }

    /// The directory's absolute path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` inside the directory. `rel` must be relative and free of `..` (a name made by
    /// [`contained`] or one of ours).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        assert!(
            rel.components().all(|c| matches!(c, Component::Normal(_))),
            "{} is not a contained relative path",
            rel.display()
        );
        self.root.join(rel)
    }

    /// Writes `bytes` to `rel` (parents created), refusing to replace anything already there.
    pub fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let path = self.join(rel);
        self.create_parent(&path)?;
        write_new(&path, bytes)?;
        Ok(path)
    }

    /// Creates the parent directories of `path` (a path inside the directory).
    pub fn create_parent(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        Ok(())
    }

    /// `path` relative to the directory, for reports (`artifacts/bin/orders`).
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Writes a new file; an existing one is an error (two recorded names mapped to one path).
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A recorded name as a relative path that stays inside whatever directory it is joined to:
/// a root or drive prefix is dropped (`/etc/app.toml` → `etc/app.toml`), `.` is dropped, and `..`
/// becomes a directory named `_parent_` (`../common/a.toml` → `_parent_/common/a.toml`). `None`
/// when nothing is left (an empty name, `/`).
pub fn contained(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => out.push("_parent_"),
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_names_stay_inside() {
        let cases = [
            ("/etc/orders/app.toml", Some("etc/orders/app.toml")),
            ("config/app.toml", Some("config/app.toml")),
            ("./a//b", Some("a/b")),
            ("../../etc/passwd", Some("_parent_/_parent_/etc/passwd")),
            ("a/../../b", Some("a/_parent_/_parent_/b")),
            ("/", None),
            ("", None),
            (".", None),
        ];
        for (name, expected) in cases {
            assert_eq!(contained(name), expected.map(PathBuf::from), "{name:?}");
        }
    }

    #[test]
    fn the_directory_must_be_new_or_empty_and_files_are_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = OutDir::create(&dir.path().join("out")).expect("a new directory");
        out.write("a/b.txt", b"one").expect("written");
        assert!(out.write("a/b.txt", b"two").is_err(), "replaced a file");
        assert_eq!(
            std::fs::read(out.join("a/b.txt")).expect("read back"),
            b"one"
        );
        let e = OutDir::create(&dir.path().join("out")).expect_err("not empty");
        assert!(e.to_string().contains("not empty"), "{e}");
        std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
        OutDir::create(&dir.path().join("empty")).expect("an empty directory is fine");
    }
}
