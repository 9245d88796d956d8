use std::path::{Path, PathBuf};

use super::*;
use crate::digest::sha256_digest;
use crate::limits::CONFIG_FILE_BYTES_MAX;
use crate::{pb, Body, RecordMeta};
use stateledger_core::limits::CONFIG_ENTRIES_MAX;

fn write(dir: &Path, rel: &str, content: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&path, content).expect("write");
    path
}

/// A collector that sees only the given environment, never the test process's.
fn collector(env: &[(&str, &str)]) -> ConfigCollector {
    ConfigCollector::new().environment(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn entry<'a>(snapshot: &'a pb::ConfigSnapshot, key: &str) -> &'a pb::ConfigEntry {
    snapshot
        .entries
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no entry {key}: {:?}", keys(snapshot)))
}

fn keys(snapshot: &pb::ConfigSnapshot) -> Vec<&str> {
    snapshot.entries.iter().map(|e| e.key.as_str()).collect()
}

/// The record the snapshot goes into validates, and its JSON form is returned.
fn record_json(snapshot: &pb::ConfigSnapshot) -> String {
    let record = RecordMeta::new("orders-service", "prod", 1)
        .record(Body::Config(snapshot.clone()))
        .expect("config record validates");
    serde_json::to_string(&record).expect("json")
}

fn rejected(c: &ConfigCollector) -> Vec<ConfigError> {
    c.collect().expect_err("must be rejected").problems
}

fn key_of(path: &Path) -> String {
    format!("file:{}", path.display())
}

#[test]
fn complete_snapshot_of_files_directories_and_environment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = write(tmp.path(), "app.yaml", "port: 8080\nregion: eu\n");
    let conf = tmp.path().join("conf.d");
    write(&conf, "b.toml", "b = 2");
    write(&conf, "a.toml", "a = 1");
    write(&conf, "nested/c.ini", "[c]\nx=1\n");

    let out = collector(&[
        ("LOG_LEVEL", "info"),
        ("ORDERS_LIMIT", "5"),
        ("ORDERS_MODE", "fast"),
    ])
    .version("config-repo@4f1c")
    .file(&app)
    .dir(&conf)
    .env("LOG_LEVEL")
    .env_prefix("ORDERS_")
    .collect()
    .expect("complete");
    let s = &out.snapshot;
    assert!(s.complete);
    assert_eq!(s.version, "config-repo@4f1c");
    let mut want = vec![
        key_of(&app),
        key_of(&conf.join("a.toml")),
        key_of(&conf.join("b.toml")),
        key_of(&conf.join("nested/c.ini")),
        "env:LOG_LEVEL".to_string(),
        "env:ORDERS_LIMIT".to_string(),
        "env:ORDERS_MODE".to_string(),
    ];
    want.sort();
    assert_eq!(keys(s), want);

    let e = entry(s, &key_of(&conf.join("a.toml")));
    assert_eq!(
        (e.source.as_str(), e.value.as_str(), e.size),
        ("dir", "a = 1", 5)
    );
    assert_eq!(e.digest, sha256_digest(b"a = 1"));
    // A multi-line value is kept in clear exactly when the ledger accepts newlines in a clear
    // value; never escaped.
    let e = entry(s, &key_of(&app));
    let multiline_kept = super::collector::ledger_accepts_value("a\nb");
    let want = if multiline_kept {
        "port: 8080\nregion: eu\n"
    } else {
        ""
    };
    assert_eq!((e.source.as_str(), e.value.as_str()), ("file", want));
    assert_eq!(e.digest, sha256_digest(b"port: 8080\nregion: eu\n"));
    assert_eq!(e.size, 22);
    let e = entry(s, "env:LOG_LEVEL");
    assert_eq!((e.source.as_str(), e.value.as_str()), ("env", "info"));
    assert!(out.redactions.is_empty());
    record_json(s);
}

#[test]
fn nothing_given_is_rejected() {
    assert_eq!(rejected(&collector(&[])), [ConfigError::NothingToSnapshot]);
}

#[test]
fn missing_file_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("app.yaml");
    let rejection = collector(&[]).file(&path).collect().expect_err("partial");
    assert_eq!(
        rejection.problems,
        [ConfigError::MissingFile { path: path.clone() }]
    );
    assert_eq!(
        rejection.to_string(),
        format!(
            "partial config is rejected: missing file: {} does not exist",
            path.display()
        )
    );
}

#[test]
fn unreadable_file_is_rejected() {
    // Reading /proc/self/mem at offset 0 fails even for root (nothing is mapped there).
    let mem = Path::new("/proc/self/mem");
    if mem.exists() {
        let problems = rejected(&collector(&[]).file(mem));
        assert!(
            matches!(&problems[..], [ConfigError::UnreadableFile { path, .. }] if path == mem),
            "{problems:?}"
        );
    }
    // A file without read permission, where permissions bind (not as root).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = write(tmp.path(), "app.yaml", "port: 1");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        if std::fs::read(&path).is_err() {
            let problems = rejected(&collector(&[]).file(&path));
            assert!(
                matches!(&problems[..], [ConfigError::UnreadableFile { path: p, reason }]
                    if *p == path && reason.contains("ermission denied")),
                "{problems:?}"
            );
        }
    }
}

#[test]
fn special_files_and_wrong_kinds_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("conf");
    std::fs::create_dir(&conf).expect("mkdir");
    let socket = conf.join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("socket");
    let file = write(tmp.path(), "file.txt", "x");
    let problems = rejected(&collector(&[]).dir(&conf).file(&conf).dir(&file));
    assert_eq!(
        problems,
        [
            ConfigError::NotARegularFile {
                path: conf.clone(),
                kind: "directory"
            },
            ConfigError::NotARegularFile {
                path: socket,
                kind: "socket"
            },
            ConfigError::NotADirectory { path: file },
        ]
    );
}

#[test]
fn too_large_file_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("huge.json");
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(CONFIG_FILE_BYTES_MAX + 1).expect("sparse file");
    assert_eq!(
        rejected(&collector(&[]).file(&path)),
        [ConfigError::FileTooLarge {
            path,
            size: CONFIG_FILE_BYTES_MAX + 1,
            max: CONFIG_FILE_BYTES_MAX
        }]
    );
}

#[test]
fn dangling_link_and_link_loop_in_a_directory_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("conf");
    write(&conf, "app.yaml", "a: 1");
    let dangling = conf.join("limits.yaml");
    std::os::unix::fs::symlink("/nonexistent/limits.yaml", &dangling).expect("symlink");
    let looped = conf.join("sub/again");
    std::fs::create_dir(conf.join("sub")).expect("mkdir");
    std::os::unix::fs::symlink(&conf, &looped).expect("symlink");
    assert_eq!(
        rejected(&collector(&[]).dir(&conf)),
        [
            ConfigError::DanglingSymlink {
                path: dangling,
                target: PathBuf::from("/nonexistent/limits.yaml")
            },
            ConfigError::SymlinkLoop { path: looped },
        ]
    );
}

#[test]
fn symlinked_files_are_followed_and_kubernetes_internals_skipped() {
    // The layout of a Kubernetes ConfigMap volume.
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = tmp.path().join("config");
    write(&vol, "..2026_01_01_00_00_00.123/app.yaml", "a: 1");
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.123", vol.join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/app.yaml", vol.join("app.yaml")).expect("link");
    let out = collector(&[]).dir(&vol).collect().expect("complete");
    assert_eq!(keys(&out.snapshot), [key_of(&vol.join("app.yaml"))]);
    assert_eq!(out.snapshot.entries[0].value, "a: 1");
}

#[test]
fn missing_environment_variables_are_rejected() {
    assert_eq!(
        rejected(
            &collector(&[("HOME", "/root")])
                .env("DATABASE_URL")
                .env_prefix("ORDERS_")
        ),
        [
            ConfigError::MissingEnv {
                name: "DATABASE_URL".into()
            },
            ConfigError::NoEnvMatch {
                prefix: "ORDERS_".into()
            },
        ]
    );
}

#[test]
fn unresolved_placeholders_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = write(
        tmp.path(),
        "app.yaml",
        "host: ${DB_HOST}\nport: ${DB_PORT:-5432}\nregion: {{ region }}\n",
    );
    let rejection = collector(&[]).file(&app).collect().expect_err("partial");
    assert_eq!(
        rejection.problems,
        [
            ConfigError::UnresolvedPlaceholder {
                key: key_of(&app),
                line: 1,
                placeholder: "${DB_HOST}".into(),
                why: "no variable of that name was given and the environment does not set it"
                    .into()
            },
            ConfigError::UnresolvedPlaceholder {
                key: key_of(&app),
                line: 3,
                placeholder: "{{ region }}".into(),
                why: "no variable of that name was given".into()
            },
        ]
    );
    assert!(rejection.to_string().contains(&format!(
        "unresolved placeholder in {} line 1: ${{DB_HOST}}",
        key_of(&app)
    )));

    // An env value can hold one too.
    assert!(matches!(
        &rejected(&collector(&[("URL", "http://${HOST}/x")]).env("URL"))[..],
        [ConfigError::UnresolvedPlaceholder { key, line: 1, .. }] if key == "env:URL"
    ));
}

#[test]
fn placeholders_resolve_from_given_variables_and_the_environment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = write(
        tmp.path(),
        "app.yaml",
        "host: ${DB_HOST}\nport: ${DB_PORT:-5432}\nregion: {{ region }}\n",
    );
    let out = collector(&[("DB_HOST", "db-${DB_ZONE}"), ("DB_ZONE", "a")])
        .file(&app)
        .var("region", "eu-west-1")
        .collect()
        .expect("resolved");
    // The variables the effective value depends on are captured, transitively; DB_PORT is unset
    // and its default applies, so there is nothing to capture for it.
    let mut want = vec![
        "env:DB_HOST".to_string(),
        "env:DB_ZONE".to_string(),
        key_of(&app),
        "var:region".to_string(),
    ];
    want.sort();
    assert_eq!(keys(&out.snapshot), want);
    assert_eq!(entry(&out.snapshot, "var:region").source, "var");
    assert_eq!(entry(&out.snapshot, "env:DB_HOST").value, "db-${DB_ZONE}");
    record_json(&out.snapshot);

    // With environment resolution off the same file is partial.
    let problems = rejected(
        &collector(&[("DB_HOST", "db"), ("DB_ZONE", "a")])
            .file(&app)
            .var("region", "eu")
            .resolve_from_env(false),
    );
    assert!(
        matches!(&problems[..], [ConfigError::UnresolvedPlaceholder { placeholder, why, .. }]
            if placeholder == "${DB_HOST}" && why.contains("environment resolution is off")),
        "{problems:?}"
    );

    // A script recorded as it is can be exempted.
    let script = write(tmp.path(), "entrypoint.sh", "exec app \"${1}\"\n");
    assert!(collector(&[]).file(&script).collect().is_err());
    collector(&[])
        .file(&script)
        .no_placeholder_check("*.sh")
        .collect()
        .expect("exempt");
}

#[test]
fn too_many_entries_are_rejected() {
    let env: Vec<(String, String)> = (0..=CONFIG_ENTRIES_MAX)
        .map(|i| (format!("ORDERS_{i:05}"), "1".to_string()))
        .collect();
    assert_eq!(
        rejected(
            &ConfigCollector::new()
                .environment(env)
                .env_prefix("ORDERS_")
        ),
        [ConfigError::TooManyEntries {
            max: CONFIG_ENTRIES_MAX
        }]
    );
}

#[test]
fn too_deep_a_directory_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("conf");
    let mut deep = conf.clone();
    for _ in 0..=crate::limits::CONFIG_DIR_DEPTH_MAX {
        deep.push("d");
    }
    write(&deep, "x.yaml", "x: 1");
    assert_eq!(
        rejected(&collector(&[]).dir(&conf)),
        [ConfigError::TooDeep {
            path: deep,
            max: crate::limits::CONFIG_DIR_DEPTH_MAX
        }]
    );
}

#[test]
fn too_many_bytes_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "conf/a.bin", &"a".repeat(600));
    write(tmp.path(), "conf/b.bin", &"b".repeat(600));
    let c = collector(&[]).dir(tmp.path().join("conf"));
    c.clone()
        .snapshot_bytes_max(1200)
        .collect()
        .expect("at the limit");
    assert_eq!(
        rejected(&c.snapshot_bytes_max(1199)),
        [ConfigError::SnapshotTooLarge { max: 1199 }]
    );
}

#[test]
fn a_snapshot_must_fit_one_record() {
    // Clear values go first, largest first, until the snapshot fits.
    let env: Vec<(String, String)> = (0..30)
        .map(|i| (format!("ORDERS_{i:02}"), "v".repeat(1000 + i * 100)))
        .collect();
    let out = ConfigCollector::new()
        .environment(env)
        .env_prefix("ORDERS_")
        .collect()
        .expect("fits without some values");
    assert!(!out.values_dropped.is_empty());
    assert!(out.values_dropped.contains(&"env:ORDERS_29".to_string()));
    assert!(!out.values_dropped.contains(&"env:ORDERS_00".to_string()));
    assert_eq!(entry(&out.snapshot, "env:ORDERS_29").value, "");
    assert_eq!(entry(&out.snapshot, "env:ORDERS_00").value.len(), 1000);
    record_json(&out.snapshot);

    // Without values it still does not fit: rejected, never cut.
    let env: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("ORDERS_{i:04}"), "1".to_string()))
        .collect();
    let problems = rejected(
        &ConfigCollector::new()
            .environment(env)
            .env_prefix("ORDERS_"),
    );
    assert!(
        matches!(
            &problems[..],
            [ConfigError::RecordTooLarge { entries: 1000, .. }]
        ),
        "{problems:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rejection = collector(&[])
        .file(tmp.path().join("a.yaml"))
        .file(tmp.path().join("b.yaml"))
        .env("X")
        .collect()
        .expect_err("partial");
    assert_eq!(rejection.total, 3);
    assert_eq!(rejection.problems.len(), 3);
    assert_eq!(rejection.to_string().matches("; ").count(), 2);

    assert!(matches!(
        &rejected(&collector(&[("X", "1")]).env("X").secret("[unclosed"))[..],
        [ConfigError::InvalidPattern { pattern, .. }] if pattern == "[unclosed"
    ));
}

#[test]
fn secrets_are_redacted_and_provable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key_file = write(tmp.path(), "tls.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n");
    let app = write(tmp.path(), "app.yaml", "port: 8080\ndb_password: hunter2\n");
    let limits = write(tmp.path(), "limits.yaml", "max: 5");
    let secrets_dir = tmp.path().join("secrets");
    write(&secrets_dir, "db", "s3cr3t-db");
    let env = [
        ("DB_PASSWORD", "hunter2"),
        ("DATABASE_URL", "postgres://app:pw123@db/orders"),
        ("STRIPE_KEY", "sk_live_abc"),
        ("LOG_LEVEL", "info"),
        ("CUSTOMER_NAME", "acme"),
    ];
    let out = collector(&env)
        .file(&key_file)
        .file(&app)
        .file(&limits)
        .dir(&secrets_dir)
        .env_prefix("")
        .secret("CUSTOMER_*")
        .secret("limits.yaml")
        .not_secret("STRIPE_KEY")
        .collect()
        .expect("complete");
    let s = &out.snapshot;
    let redacted: Vec<&str> = s
        .entries
        .iter()
        .filter(|e| e.redacted)
        .map(|e| e.key.as_str())
        .collect();
    let mut want = vec![
        key_of(&app),
        format!("{}#db_password", key_of(&app)),
        key_of(&key_file),
        key_of(&limits),
        key_of(&secrets_dir.join("db")),
        "env:CUSTOMER_NAME".to_string(),
        "env:DATABASE_URL".to_string(),
        "env:DB_PASSWORD".to_string(),
    ];
    want.sort();
    assert_eq!(redacted, want);
    assert!(
        !entry(s, "env:STRIPE_KEY").redacted,
        "not_secret overrides the name heuristic"
    );
    assert!(!entry(s, "env:LOG_LEVEL").redacted);

    let reasons: Vec<(&str, &str)> = out
        .redactions
        .iter()
        .map(|r| (r.key.as_str(), r.reason.as_str()))
        .collect();
    assert!(reasons.contains(&("env:DB_PASSWORD", "name \"DB_PASSWORD\" looks secret")));
    assert!(reasons.contains(&("env:DATABASE_URL", "line 1 holds a URL with a password")));
    assert!(reasons.contains(&("env:CUSTOMER_NAME", "listed as secret")));
    // app.yaml holds one secret key: the file is redacted, and read key by key.
    let app_key = key_of(&app);
    assert!(reasons.contains(&(
        app_key.as_str(),
        "key db_password secret; the file is also recorded key by key (2 entries, 1 redacted)"
    )));
    let port = entry(s, &format!("{app_key}#port"));
    assert_eq!((port.value.as_str(), port.source.as_str()), ("8080", "key"));
    assert_eq!(port.digest, sha256_digest(b"8080"));

    // Redacted: no value, an hmac digest a holder of the value can verify with the salt.
    let e = entry(s, "env:DB_PASSWORD");
    assert_eq!((e.value.as_str(), e.size), ("", 7));
    assert!(e.digest.starts_with("hmac-sha256:"));
    assert_eq!(verify_redacted(b"hunter2", &out.salt, &e.digest), Ok(()));
    assert_eq!(
        verify_redacted(b"hunter3", &out.salt, &e.digest),
        Err(RedactedMismatch::Mismatch)
    );
    let e = entry(s, &key_of(&secrets_dir.join("db")));
    assert_eq!(verify_redacted(b"s3cr3t-db", &out.salt, &e.digest), Ok(()));

    // No secret reaches the record, in clear or as a plain (guessable) hash.
    let json = record_json(s);
    for secret in ["hunter2", "pw123", "s3cr3t-db", "MIIE", "acme", "max: 5"] {
        assert!(!json.contains(secret), "{secret} leaked");
        assert!(
            !json.contains(&sha256_digest(secret.as_bytes())),
            "hash of {secret} leaked"
        );
    }
    assert!(!json.contains(&out.salt.to_hex()));
}

#[test]
fn salts_are_per_snapshot_unless_reused() {
    let env = [("API_TOKEN", "t0k3n"), ("PORT", "80")];
    let a = collector(&env).env_prefix("").collect().expect("ok");
    let b = collector(&env).env_prefix("").collect().expect("ok");
    let digest = |c: &ConfigCollection| entry(&c.snapshot, "env:API_TOKEN").digest.clone();
    assert_ne!(digest(&a), digest(&b), "a fresh salt per snapshot");
    // The derived version does not depend on the salt, only on what was collected.
    assert_eq!(a.snapshot.version, b.snapshot.version);
    assert!(a.snapshot.version.starts_with("sha256:"));

    let c = collector(&env)
        .env_prefix("")
        .salt(a.salt.clone())
        .collect()
        .expect("ok");
    assert_eq!(digest(&a), digest(&c));

    let changed = collector(&[("API_TOKEN", "t0k3n"), ("PORT", "81")])
        .env_prefix("")
        .collect()
        .expect("ok");
    assert_ne!(changed.snapshot.version, a.snapshot.version);
}

#[test]
fn values_with_control_characters_or_binary_are_kept_by_digest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("model.bin");
    std::fs::write(&bin, [0xff, 0x00, 0x01]).expect("write");
    let out = collector(&[("BANNER", "a\tb")])
        .file(&bin)
        .env("BANNER")
        .collect()
        .expect("ok");
    let e = entry(&out.snapshot, &key_of(&bin));
    assert_eq!((e.value.as_str(), e.size), ("", 3));
    assert_eq!(e.digest, sha256_digest(&[0xff, 0x00, 0x01]));
    let banner = entry(&out.snapshot, "env:BANNER");
    let tab_kept = super::collector::ledger_accepts_value("a\tb");
    assert_eq!(banner.value, if tab_kept { "a\tb" } else { "" });
    assert_eq!(banner.digest, sha256_digest(b"a\tb"));

    // A carriage return or an escape sequence is never kept in clear (nor escaped).
    let out = collector(&[("A", "x\r\ny"), ("B", "\u{1b}[0m")])
        .env_prefix("")
        .collect()
        .expect("ok");
    for e in &out.snapshot.entries {
        assert_eq!(e.value, "", "{}", e.key);
    }
    record_json(&out.snapshot);
    record_json(&out.snapshot);
}

#[test]
fn invalid_version_and_variables_are_rejected() {
    assert!(matches!(
        &rejected(&collector(&[]).var("A", "1").version("v1\nv2"))[..],
        [ConfigError::InvalidVersion { .. }]
    ));
    assert!(matches!(
        &rejected(&collector(&[]).var("", "1"))[..],
        [ConfigError::InvalidVariable { .. }]
    ));
}

/// A structured file holding one secret is recorded key by key: the secret keys redacted (and
/// provable), the others in clear; TOML, YAML, JSON, .env and INI alike.
#[test]
fn structured_files_are_redacted_per_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "app.toml",
            "listen = \"0.0.0.0:8080\"\n[db]\nhost = \"db.internal\"\npassword = \"hunter2\"\n",
            "db.password",
            &[("listen", "0.0.0.0:8080"), ("db.host", "db.internal")][..],
        ),
        (
            "app.yaml",
            "listen: 0.0.0.0:8080\ndb:\n  host: db.internal\n  password: hunter2\n",
            "db.password",
            &[("listen", "0.0.0.0:8080"), ("db.host", "db.internal")][..],
        ),
        (
            "app.json",
            "{\"listen\": \"0.0.0.0:8080\", \"db\": {\"host\": \"db.internal\", \"apiKey\": \"hunter2\"}}",
            "db.apiKey",
            &[("listen", "0.0.0.0:8080"), ("db.host", "db.internal")][..],
        ),
        (
            ".env",
            "LISTEN=0.0.0.0:8080\nDB_HOST=db.internal\nDB_PASSWORD=hunter2\n",
            "DB_PASSWORD",
            &[("LISTEN", "0.0.0.0:8080"), ("DB_HOST", "db.internal")][..],
        ),
        (
            "app.ini",
            "listen = 0.0.0.0:8080\n[db]\nhost = db.internal\npassword = hunter2\n",
            "db.password",
            &[("listen", "0.0.0.0:8080"), ("db.host", "db.internal")][..],
        ),
    ];
    for (name, text, secret_key, visible) in cases {
        let dir = tmp.path().join(name.trim_start_matches('.'));
        let file = write(&dir, name, text);
        let out = collector(&[]).file(&file).collect().expect("complete");
        let s = &out.snapshot;
        let key = key_of(&file);
        assert!(entry(s, &key).redacted, "{name}: the file as a whole");
        let secret = entry(s, &format!("{key}#{secret_key}"));
        assert!(secret.redacted && secret.value.is_empty(), "{name}");
        assert_eq!(
            verify_redacted(b"hunter2", &out.salt, &secret.digest),
            Ok(())
        );
        for (k, v) in visible {
            let e = entry(s, &format!("{key}#{k}"));
            assert_eq!((e.redacted, e.value.as_str()), (false, *v), "{name} {k}");
        }
        let json = record_json(s); // the record validates
        assert!(!json.contains("hunter2"), "{name}: the secret leaked");
        assert!(
            !json.contains(&sha256_digest(b"hunter2")),
            "{name}: its plain hash leaked"
        );
    }
}

/// `--secret` matches a key inside a structured file (its key path or last name); a file with
/// no secret key stays whole and in clear; one that cannot be read key by key stays whole and
/// redacted, saying why.
#[test]
fn secret_patterns_reach_inside_files_and_unreadable_ones_stay_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plain = write(
        tmp.path(),
        "plain.toml",
        "listen = \"a\"\ndb_host = \"b\"\n",
    );
    let out = collector(&[]).file(&plain).collect().expect("complete");
    assert!(!entry(&out.snapshot, &key_of(&plain)).redacted);
    assert_eq!(out.snapshot.entries.len(), 1, "no secret key: not split");

    let out = collector(&[])
        .file(&plain)
        .secret("db_host")
        .collect()
        .expect("complete");
    let key = key_of(&plain);
    assert!(entry(&out.snapshot, &format!("{key}#db_host")).redacted);
    assert!(!entry(&out.snapshot, &format!("{key}#listen")).redacted);

    let block = write(
        tmp.path(),
        "block.yaml",
        "name: x\nnote: |\n  password: hunter2\n",
    );
    let out = collector(&[]).file(&block).collect().expect("complete");
    assert_eq!(out.snapshot.entries.len(), 1, "not split");
    let reason = &out.redactions[0].reason;
    assert!(
        reason.contains("recorded whole because it was not read as YAML"),
        "{reason}"
    );
}

/// A key the user marks not secret keeps a structured file in clear: the keys' judgment replaces
/// the line-by-line look at the whole text. Counts and tokenizers named "token…" are no
/// credentials.
#[test]
fn a_key_marked_not_secret_keeps_its_file_in_clear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let params = write(
        tmp.path(),
        "params.toml",
        "temperature = 0.7\nmax_tokens = 10\nsession_id = \"abc\"\n",
    );
    let text = "temperature = 0.7\nmax_tokens = 10\nsession_id = \"abc\"\n";
    let listed = write(&tmp.path().join("b"), "params.toml", text);
    let out = collector(&[]).file(&params).collect().expect("complete");
    assert!(
        !entry(&out.snapshot, &key_of(&params)).redacted,
        "max_tokens is no credential"
    );
    let cred = write(
        &tmp.path().join("c"),
        "params.toml",
        "session_token = \"t0k\"\n",
    );
    let out = collector(&[])
        .file(&listed)
        .file(&cred)
        .not_secret("session_token")
        .collect()
        .expect("complete");
    assert!(!entry(&out.snapshot, &key_of(&listed)).redacted);
    assert!(
        !entry(&out.snapshot, &key_of(&cred)).redacted,
        "a key marked not secret keeps the file in clear"
    );
    let out = collector(&[]).file(&cred).collect().expect("complete");
    assert!(
        entry(&out.snapshot, &key_of(&cred)).redacted,
        "unmarked, session_token is a credential"
    );
}
