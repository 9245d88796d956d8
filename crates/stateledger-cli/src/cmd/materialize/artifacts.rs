//! Step 2, artifacts and lockfiles. Each recorded artifact is looked for by its digest under the
//! `--artifacts` directories (a name proves nothing: a rebuilt binary keeps its name), copied to
//! `artifacts/<recorded name>` and hashed again there. Each recorded lockfile is compared with
//! the file of that name in the checkout of step 1.

use std::path::{Path, PathBuf};

use stateledger_core::record::pb;
use stateledger_core::state::SystemState;

use super::digest_index::{copy_and_hash, file_digest, Algorithm, DigestIndex};
use super::out_dir::{contained, OutDir};
use super::report::StepLog;

/// Where artifacts are restored, inside the output directory.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// Restores the artifacts and checks the lockfiles; `checkout` is step 1's.
pub fn restore(
    state: &SystemState,
    out: &OutDir,
    index: &mut DigestIndex,
    checkout: Option<&Path>,
    log: &mut StepLog<'_>,
) -> anyhow::Result<()> {
    let Some(code) = &state.code else {
        log.summary = "no code record up to T: no artifacts or lockfiles recorded".into();
        return Ok(());
    };
    let leaf = Some(code.leaf_index);
    let mut restored = 0;
    for a in &code.value.artifacts {
        if restore_artifact(a, out, index, leaf, log)? {
            restored += 1;
        }
    }
    let mut matching = 0;
    for l in &code.value.lockfiles {
        if check_lockfile(l, checkout, leaf, log) {
            matching += 1;
        }
    }
    log.summary = format!(
        "artifacts: {restored} of {} restored by digest{}; lockfiles: {matching} of {} match the checkout",
        code.value.artifacts.len(),
        if code.value.artifacts.is_empty() {
            String::new()
        } else {
            format!(" to {ARTIFACTS_DIR}/")
        },
        code.value.lockfiles.len()
    );
    Ok(())
}

/// Where artifact `name` goes: its recorded name, kept inside `artifacts/`; a name that says
/// nothing (`/`) goes under its digest.
fn artifact_path(name: &str, digest: &str) -> PathBuf {
    Path::new(ARTIFACTS_DIR)
        .join(contained(name).unwrap_or_else(|| PathBuf::from(digest.replace(':', "-"))))
}

fn restore_artifact(
    a: &pb::Artifact,
    out: &OutDir,
    index: &mut DigestIndex,
    leaf: Option<u64>,
    log: &mut StepLog<'_>,
) -> anyhow::Result<bool> {
    let Some(alg) = Algorithm::of(&a.digest) else {
        log.finding(
            "artifact_unverifiable",
            format!(
                "artifact {:?} is recorded with digest {:?}, which no file can be checked against",
                a.name, a.digest
            ),
            leaf,
        );
        return Ok(false);
    };
    if index.is_empty() {
        log.finding(
            "artifact_missing",
            format!(
                "artifact {:?} ({}) was not restored: give --artifacts DIR, a directory that holds it under any name",
                a.name, a.digest
            ),
            leaf,
        );
        return Ok(false);
    }
    let Some(found) = index.find(&a.digest)? else {
        let same = index.same_name(&a.name, &a.digest);
        match same.first() {
            Some((path, digest)) => log.finding(
                "artifact_digest_mismatch",
                format!(
                    "artifact {:?} is recorded as {}; no file under --artifacts has that digest, and {} \
                     there has {digest}: a different file under the recorded name (rebuilt, replaced or swapped)",
                    a.name,
                    a.digest,
                    path.display()
                ),
                leaf,
            ),
            None => log.finding(
                "artifact_missing",
                format!(
                    "artifact {:?} ({}) is not under --artifacts: no file there has that digest",
                    a.name, a.digest
                ),
                leaf,
            ),
        }
        return Ok(false);
    };
    let rel = artifact_path(&a.name, &a.digest);
    let to = out.join(&rel);
    out.create_parent(&to)?;
    let copied = match copy_and_hash(&found, &to, alg) {
        Ok(d) => d,
        Err(e) => {
            log.finding(
                "artifact_write_failed",
                format!("artifact {:?}: {e:#}", a.name),
                leaf,
            );
            return Ok(false);
        }
    };
    if copied != a.digest {
        log.finding(
            "artifact_changed",
            format!(
                "artifact {:?}: {} had the recorded digest when indexed, but its copy has {copied} (it changed while being copied)",
                a.name,
                found.display()
            ),
            leaf,
        );
        return Ok(false);
    }
    log.files.push(out.display(&to));
    Ok(true)
}

/// Compares a recorded lockfile with the checkout's; true when it matches.
fn check_lockfile(
    l: &pb::Artifact,
    checkout: Option<&Path>,
    leaf: Option<u64>,
    log: &mut StepLog<'_>,
) -> bool {
    let Some(checkout) = checkout else {
        // Not a finding of its own: the code step's finding says why there is no checkout.
        log.note(format!(
            "lockfile {:?} ({}) was not checked: the code was not checked out (see the code step)",
            l.name, l.digest
        ));
        return false;
    };
    let Some(alg) = Algorithm::of(&l.digest) else {
        log.finding(
            "lockfile_unchecked",
            format!(
                "lockfile {:?} is recorded with digest {:?}, which no file can be checked against",
                l.name, l.digest
            ),
            leaf,
        );
        return false;
    };
    if Path::new(&l.name).is_absolute() {
        log.finding(
            "lockfile_missing",
            format!(
                "lockfile {:?} was recorded outside the repository, so the checkout cannot hold it",
                l.name
            ),
            leaf,
        );
        return false;
    }
    let Some(rel) = contained(&l.name) else {
        return false;
    };
    let path = checkout.join(rel);
    match file_digest(&path, alg) {
        Ok(d) if d == l.digest => true,
        Ok(d) => {
            log.finding(
                "lockfile_mismatch",
                format!(
                    "lockfile {:?} in the checkout has {d}, but the build recorded {}: it was built with other \
                     dependency versions than the commit pins",
                    l.name, l.digest
                ),
                leaf,
            );
            false
        }
        Err(e) => {
            log.finding(
                "lockfile_missing",
                format!(
                    "lockfile {:?} ({}) is not in the checkout ({e}): the commit does not hold the lockfile the build used",
                    l.name, l.digest
                ),
                leaf,
            );
            false
        }
    }
}
