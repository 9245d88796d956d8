//! Dependency lockfiles recognised in a repository's root.

use std::path::Path;

/// File names of dependency lockfiles, by ecosystem. Found in the repository root and hashed; a
/// lockfile anywhere else can be named explicitly.
pub const LOCKFILE_NAMES: &[&str] = &[
    // Rust
    "Cargo.lock",
    // JavaScript / TypeScript
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lock",
    "bun.lockb",
    "deno.lock",
    // Python
    "poetry.lock",
    "Pipfile.lock",
    "pdm.lock",
    "uv.lock",
    "requirements.lock",
    "conda-lock.yml",
    // Go
    "go.sum",
    "go.work.sum",
    // Ruby
    "Gemfile.lock",
    // PHP
    "composer.lock",
    // JVM
    "gradle.lockfile",
    "buildscript-gradle.lockfile",
    // .NET
    "packages.lock.json",
    "paket.lock",
    // Elixir, Dart, Swift, Objective-C, Haskell, R, C/C++, Nix
    "mix.lock",
    "pubspec.lock",
    "Package.resolved",
    "Podfile.lock",
    "Cartfile.resolved",
    "stack.yaml.lock",
    "cabal.project.freeze",
    "renv.lock",
    "conan.lock",
    "flake.lock",
];

/// The known lockfiles that exist as regular files in `root`, by name, sorted.
pub fn detect_lockfiles(root: &Path) -> Vec<String> {
    let mut found: Vec<String> = LOCKFILE_NAMES
        .iter()
        .filter(|name| root.join(name).is_file())
        .map(|name| name.to_string())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfiles_in_the_root_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["Cargo.lock", "go.sum", "poetry.lock", "README.md"] {
            std::fs::write(dir.path().join(name), name).expect("write");
        }
        std::fs::create_dir(dir.path().join("yarn.lock")).expect("a directory, not a lockfile");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/package-lock.json"), "{}").expect("write");
        assert_eq!(
            detect_lockfiles(dir.path()),
            ["Cargo.lock", "go.sum", "poetry.lock"]
        );
    }
}
