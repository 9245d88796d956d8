//! A small file system of its own for a node's data directory (a tmpfs of a given size), to fill
//! a disk for real. Needs root. Unmounted (lazily, so a node still running does not block it)
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// See the module comment.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} (tests that fill a disk need it, as root): {e}",
                args[0]
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `path` (created if missing).
    pub fn mount(path: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("the mount point");
        let p = path.to_string_lossy().into_owned();
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m,mode=0700"),
            "tmpfs",
            &p,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Grows or shrinks it (space returns, or goes).
    pub fn resize(&self, mib: u64) {
        let p = self.path.to_string_lossy().into_owned();
        run(&["mount", "-o", &format!("remount,size={mib}m"), &p])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let p = self.path.to_string_lossy().into_owned();
        let _ = run(&["umount", "-l", &p]);
    }
}
