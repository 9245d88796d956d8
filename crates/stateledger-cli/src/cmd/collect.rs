//! `stateledger collect`: observe one dimension of a system's state and print it as records, one
//! JSON object per line (the records' serde JSON form), ready for `stateledger submit`:
//!
//! ```text
//! stateledger collect code --system orders-service --artifact 'target/release/orders' \
//!   | stateledger submit --key orders.key
//! ```
//!
//! Subcommands: `code`, `config`, `env`, `mutations`, `capture seed|clock|external-call`, and
//! `verify-redacted` (prove a value against a redacted config digest with the snapshot's salt).
//! Nothing is printed unless every record is valid; diagnostics go to stderr.
//!
//! A thin face over `stateledger-collect`, which owns every rule (and tests it): this file turns
//! flags into collector calls, names the flag that fixes an error, and prints.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use stateledger_collect::capture::{self, CallData, SeedText};
use stateledger_collect::code::{CodeCollector, CodeError};
use stateledger_collect::config::{
    verify_redacted, ConfigCollector, ConfigRecordError, Salt, SaltKeeping,
};
use stateledger_collect::environment::{parse_flag, EnvironmentCollector};
use stateledger_collect::mutation::{
    parse_kafka_ref, DbInput, MutationError, MutationInput, MutationReader, TextOrNumber,
};
use stateledger_collect::payload_file::read_payload_file;
use stateledger_collect::{pb, Body, RecordMeta};

/// Writes a diagnostic line to standard error (never fails: see `output::diag`).
macro_rules! diag {
    ($($arg:tt)*) => {
        super::output::diag(format_args!($($arg)*))
    };
}

/// Shared by every collect command: what the output is and what the exit status means.
macro_rules! collect_help {
    ($examples:literal) => {
        concat!(
            "Examples:\n",
            $examples,
            "\n\nOutput: one record per line as JSON (the input of `stateledger submit`), in both output
formats; nothing is printed unless every record is one the ledger accepts. Diagnostics go
to standard error.

Exit status:
  0  the records were printed
  2  nothing was printed: the input is incomplete or invalid (the message names the flag
     that fixes it)"
        )
    };
}

pub const HELP: &str = collect_help!(
    "  stateledger collect code --system orders-service --repo . --artifact target/release/orders
  stateledger collect config --system orders-service --file /etc/orders/app.toml --env DATABASE_URL \\
      --salt-out orders.salt
  stateledger collect env --system orders-service --time-source host-chrony --time-synchronized
  stateledger collect mutations --system orders-service --jsonl events.jsonl
  stateledger collect capture seed --system orders-service --capture-id pricing-7 --u64 42"
);

pub const CODE_HELP: &str = collect_help!(
    "  stateledger collect code --system orders-service --repo .
  stateledger collect code --system orders-service --repo . --repo-name github.com/acme/orders \\
      --artifact 'target/release/orders' --require-config env:DATABASE_URL
  stateledger collect code --system orders-service --repo-name github.com/acme/orders \\
      --commit $GIT_COMMIT --dirty false                 # without git (CI)"
);

pub const CONFIG_HELP: &str = collect_help!(
    "  stateledger collect config --system orders-service --file app.toml --salt-out app.salt
  stateledger collect config --system orders-service --dir /etc/orders --env-prefix ORDERS_ \\
      --secret 'db.password' --salt-in app.salt

Secrets: an entry whose name or content looks secret is recorded as a keyed digest
(hmac-sha256 with the snapshot's salt), never in clear. Inside a TOML, YAML, JSON, .env or
INI file, only the secret keys are: the file is recorded as a keyed digest and each of its
keys as its own entry, file:<path>#<key.path>, in clear unless secret."
);

pub const ENV_HELP: &str = collect_help!(
    "  stateledger collect env --system orders-service
  stateledger collect env --system orders-service --image-digest-env IMAGE_DIGEST --flag FAST_PATH=true
  stateledger collect env --system orders-service --time-source host-chrony --time-synchronized

The time source is probed (chronyc, timedatectl, ntpstat, the kernel's NTP state through
ntptime or adjtimex, systemd-timesyncd's marker file); where none of them exists (a container)
declare it with --time-source."
);

pub const MUTATIONS_HELP: &str = collect_help!(
    "  stateledger collect mutations --system orders-service --kind order_created --id evt-1 \\
      --source kafka:orders/3 --sequence 1 --payload '{\"order\":1}' --kafka orders/3/4401
  tail -f events.jsonl | stateledger collect mutations --system orders-service --jsonl -"
);

pub const CAPTURE_HELP: &str = collect_help!(
    "  stateledger collect capture seed --system orders-service --capture-id pricing-7 --hex 0a0b0c
  stateledger collect capture clock --system orders-service --capture-id now-1
  stateledger collect capture external-call --system orders-service --capture-id fx-1 \\
      --target https://fx.example/rates --response-file rates.json"
);

pub const VERIFY_REDACTED_HELP: &str = "\
Examples:
  stateledger collect verify-redacted --salt-file app.salt \\
      --digest hmac-sha256:3f2a... --value-env DB_PASSWORD

Output: `ok: the value matches <digest>`; with --output json {\"ok\": true, \"digest\"}.

Exit status:
  0  the value matches the redacted digest
  2  it does not, or the salt file cannot be read";

#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    #[command(subcommand)]
    pub command: CollectCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CollectCommand {
    /// Code: repository, full commit, dirty tree, branch or tag, artifact and lockfile digests.
    #[command(after_help = CODE_HELP)]
    Code(CodeArgs),
    /// Configuration: a complete snapshot of files, directories and env vars (partial is refused;
    /// secrets are redacted with a keyed digest).
    #[command(after_help = CONFIG_HELP)]
    Config(ConfigArgs),
    /// Environment: OS, kernel, arch, host, container image, runtimes, feature flags, time source.
    #[command(after_help = ENV_HELP)]
    Env(EnvArgs),
    /// Data mutations: one from flags, or a JSONL stream (one mutation per line).
    #[command(after_help = MUTATIONS_HELP)]
    Mutations(MutationArgs),
    /// Captured nondeterminism: a random seed, a clock reading or an external call.
    #[command(after_help = CAPTURE_HELP)]
    Capture(CaptureArgs),
    /// Prove that a value matches a redacted config digest, using the snapshot's salt file.
    #[command(after_help = VERIFY_REDACTED_HELP)]
    VerifyRedacted(VerifyRedactedArgs),
}

/// Who the record is about and when it was observed; and the output format.
#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    #[command(flatten)]
    pub output: super::output::OutputArgs,
    /// The system the record belongs to, e.g. orders-service.
    #[arg(long)]
    pub system: String,
    /// Where it was observed, e.g. prod/eu-west-1.
    #[arg(long, default_value = "")]
    pub scope: String,
    /// Observation time in nanoseconds since the Unix epoch (default: now).
    #[arg(long)]
    pub observed_at_unix_nanos: Option<u64>,
}

impl RecordArgs {
    fn meta(&self) -> RecordMeta {
        match self.observed_at_unix_nanos {
            Some(t) => RecordMeta::new(&self.system, &self.scope, t),
            None => RecordMeta::now(&self.system, &self.scope),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct CodeArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// A directory inside the git working tree.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Repository id to record instead of the normalised remote URL.
    #[arg(long)]
    pub repo_name: Option<String>,
    /// Full commit id instead of reading HEAD (needed, with --repo-name and --dirty, without git).
    #[arg(long)]
    pub commit: Option<String>,
    /// Branch or tag instead of reading it.
    #[arg(long)]
    pub reference: Option<String>,
    /// Dirty flag (true/false) instead of running git status.
    #[arg(long)]
    pub dirty: Option<bool>,
    /// A build artifact to hash: a path or a glob pattern that must match a file. Repeatable.
    #[arg(long)]
    pub artifact: Vec<String>,
    /// An artifact with a known digest, NAME=DIGEST (e.g. a pushed image). Repeatable.
    #[arg(long)]
    pub artifact_digest: Vec<String>,
    /// A lockfile outside the repository root to hash too. Repeatable.
    #[arg(long)]
    pub lockfile: Vec<PathBuf>,
    /// Do not look for known lockfiles in the repository root.
    #[arg(long)]
    pub no_lockfile_detect: bool,
    /// A configuration key the code needs (e.g. env:DATABASE_URL). Repeatable.
    #[arg(long)]
    pub require_config: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// Version label of the configuration (default: sha256 of the snapshot's listing).
    #[arg(long)]
    pub config_version: Option<String>,
    /// A configuration file. Repeatable.
    #[arg(long)]
    pub file: Vec<PathBuf>,
    /// A configuration directory, read recursively. Repeatable.
    #[arg(long)]
    pub dir: Vec<PathBuf>,
    /// An environment variable that must be set. Repeatable.
    #[arg(long)]
    pub env: Vec<String>,
    /// Every environment variable with this prefix (at least one must be set). Repeatable.
    #[arg(long)]
    pub env_prefix: Vec<String>,
    /// A variable for ${NAME} / {{ NAME }} placeholders, NAME=VALUE (recorded as var:NAME).
    /// Repeatable.
    #[arg(long)]
    pub var: Vec<String>,
    /// Redact what this glob pattern matches, whatever the heuristics say: an entry key
    /// (env:NAME, file:PATH, file:PATH#KEY.PATH), an environment variable's name, a file's path
    /// or base name, or — inside a TOML, YAML, JSON, .env or INI file — a key path (db.password)
    /// or a key's last name (password). Matching a file redacts it whole; matching a key inside
    /// one redacts that key and records the file key by key. Repeatable.
    #[arg(long, value_name = "GLOB")]
    pub secret: Vec<String>,
    /// Never redact what this glob pattern matches (same matching as --secret) because of the
    /// secret-looking heuristics; --secret still wins. Repeatable.
    #[arg(long, value_name = "GLOB")]
    pub not_secret: Vec<String>,
    /// Glob pattern of entries whose placeholders are not checked (scripts, templates). Repeatable.
    #[arg(long)]
    pub no_placeholder_check: Vec<String>,
    /// Do not resolve ${NAME} placeholders from the environment.
    #[arg(long)]
    pub no_env_resolve: bool,
    /// Write the snapshot's new salt here (a new file, mode 0600). Needed when anything is
    /// redacted: without the salt nobody can prove a redacted value.
    #[arg(long, conflicts_with = "salt_in")]
    pub salt_out: Option<PathBuf>,
    /// Reuse the salt in this file (digests of one secret then compare across snapshots).
    #[arg(long)]
    pub salt_in: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct EnvArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// A feature flag in effect, NAME=VALUE. Repeatable.
    #[arg(long)]
    pub flag: Vec<String>,
    /// The container image digest (sha256:... or registry/name@sha256:...).
    #[arg(long)]
    pub image_digest: Option<String>,
    /// The environment variable that holds the container image digest.
    #[arg(long)]
    pub image_digest_env: Option<String>,
    /// Fail when running in a container without an image digest (default: warn).
    #[arg(long)]
    pub require_image_digest: bool,
    /// A runtime to record, NAME=VERSION (replaces a probed one of that name). Repeatable.
    #[arg(long)]
    pub runtime: Vec<String>,
    /// Do not probe language runtimes.
    #[arg(long)]
    pub no_runtime_probes: bool,
    /// Host name to record instead of reading it.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Declare the clock's time source instead of probing it, e.g. host-chrony for a container
    /// that follows its host's clock, or aws-time-sync.
    #[arg(long, value_name = "KIND")]
    pub time_source: Option<String>,
    /// With --time-source: the clock is synchronised to it (otherwise it is recorded as not
    /// synchronised, which lowers confidence).
    #[arg(long, requires = "time_source")]
    pub time_synchronized: bool,
    /// With --time-source: the largest error of the clock, in nanoseconds (0: not known).
    #[arg(
        long,
        requires = "time_source",
        value_name = "NANOS",
        default_value_t = 0
    )]
    pub time_max_error_ns: u64,
}

#[derive(clap::Args, Debug)]
pub struct MutationArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// Read mutations from JSONL, one per line ("-" for stdin); see the stateledger-collect
    /// mutation docs for the fields.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// With --jsonl: report bad lines on stderr and go on (exit status is still an error).
    #[arg(long)]
    pub keep_going: bool,
    /// Mutation type, e.g. order_created.
    #[arg(long)]
    pub kind: Option<String>,
    /// Mutation id, unique per source.
    #[arg(long)]
    pub id: Option<String>,
    /// The source that orders the mutations, e.g. kafka:orders/3.
    #[arg(long)]
    pub source: Option<String>,
    /// Position in the source's order, from 1.
    #[arg(long)]
    pub sequence: Option<u64>,
    /// Who caused it.
    #[arg(long, default_value = "")]
    pub origin: String,
    /// The payload as text (hashed; only the digest is recorded).
    #[arg(long)]
    pub payload: Option<String>,
    /// A file holding the payload (hashed; only the digest is recorded).
    #[arg(long)]
    pub payload_file: Option<PathBuf>,
    /// The payload's digest, <alg>:<hex>.
    #[arg(long)]
    pub payload_digest: Option<String>,
    /// Kafka coordinates, topic/partition/offset.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Database of the transaction (with --tx-id).
    #[arg(long, requires = "tx_id")]
    pub db: Option<String>,
    /// Transaction id (with --db).
    #[arg(long, requires = "db")]
    pub tx_id: Option<String>,
    /// Any other external reference.
    #[arg(long)]
    pub other_ref: Option<String>,
    /// Id of a nondeterminism capture the mutation depends on. Repeatable.
    #[arg(long)]
    pub capture: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    #[command(subcommand)]
    pub kind: CaptureKind,
}

#[derive(clap::Subcommand, Debug)]
pub enum CaptureKind {
    /// A random seed (1 to 64 bytes).
    #[command(after_help = CAPTURE_HELP)]
    Seed(SeedArgs),
    /// A clock reading.
    #[command(after_help = CAPTURE_HELP)]
    Clock(ClockArgs),
    /// The result of an external call.
    #[command(after_help = CAPTURE_HELP)]
    ExternalCall(ExternalCallArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("seed_value").required(true)))]
pub struct SeedArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// The id mutations name in their captures.
    #[arg(long)]
    pub capture_id: String,
    /// What the seed feeds, e.g. pricing-rng.
    #[arg(long, default_value = "")]
    pub name: String,
    /// The seed in hex.
    #[arg(long, group = "seed_value")]
    pub hex: Option<String>,
    /// The seed in base64.
    #[arg(long, group = "seed_value")]
    pub base64: Option<String>,
    /// The seed as an unsigned integer (recorded as 8 bytes, big-endian).
    #[arg(long, group = "seed_value")]
    pub u64: Option<u64>,
    /// Draw a fresh 32-byte seed from the OS (read it back from the printed record).
    #[arg(long, group = "seed_value")]
    pub random: bool,
}

#[derive(clap::Args, Debug)]
pub struct ClockArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// The id mutations name in their captures.
    #[arg(long)]
    pub capture_id: String,
    /// Which clock, e.g. wall or monotonic.
    #[arg(long, default_value = "wall")]
    pub clock: String,
    /// The reading in nanoseconds since the Unix epoch (default: this machine's clock now).
    #[arg(long)]
    pub unix_nanos: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct ExternalCallArgs {
    #[command(flatten)]
    pub record: RecordArgs,
    /// The id mutations name in their captures.
    #[arg(long)]
    pub capture_id: String,
    /// The service or endpoint called.
    #[arg(long)]
    pub target: String,
    /// A file holding the request (hashed).
    #[arg(long, conflicts_with = "request_digest")]
    pub request_file: Option<PathBuf>,
    /// The request's digest.
    #[arg(long)]
    pub request_digest: Option<String>,
    /// A file holding the response (hashed; kept in the record when at most 4 KiB).
    #[arg(
        long,
        conflicts_with = "response_digest",
        required_unless_present = "response_digest"
    )]
    pub response_file: Option<PathBuf>,
    /// The response's digest.
    #[arg(long)]
    pub response_digest: Option<String>,
    /// Record only the response's digest, never the response itself.
    #[arg(long)]
    pub no_keep_response: bool,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("value_from").required(true)))]
pub struct VerifyRedactedArgs {
    #[command(flatten)]
    pub output: super::output::OutputArgs,
    /// The snapshot's salt file (from collect config --salt-out).
    #[arg(long)]
    pub salt_file: PathBuf,
    /// The redacted entry's digest, hmac-sha256:<hex>.
    #[arg(long)]
    pub digest: String,
    /// The value (beware: visible in the process list; prefer --value-env or --value-file).
    #[arg(long, group = "value_from")]
    pub value: Option<String>,
    /// Read the value from this environment variable.
    #[arg(long, group = "value_from")]
    pub value_env: Option<String>,
    /// Read the value from this file (its exact bytes).
    #[arg(long, group = "value_from")]
    pub value_file: Option<PathBuf>,
}

/// Runs `stateledger collect ...`, printing records to stdout.
pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_with(args, &mut out)
}

/// Runs `stateledger collect ...`, printing records to `out`.
pub fn run_with(args: CollectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match args.command {
        CollectCommand::Code(a) => code(a, out),
        CollectCommand::Config(a) => config(a, out),
        CollectCommand::Env(a) => env(a, out),
        CollectCommand::Mutations(a) => mutations(a, out),
        CollectCommand::Capture(a) => match a.kind {
            CaptureKind::Seed(a) => seed(a, out),
            CaptureKind::Clock(a) => clock(a, out),
            CaptureKind::ExternalCall(a) => external_call(a, out),
        },
        CollectCommand::VerifyRedacted(a) => verify(a, out),
    }
}

fn emit(out: &mut dyn Write, meta: &RecordMeta, body: Body) -> anyhow::Result<()> {
    let record = meta
        .record(body)
        .context("the collected record is not one the ledger accepts")?;
    print_record(out, &record)
}

fn print_record(out: &mut dyn Write, record: &pb::Record) -> anyhow::Result<()> {
    let line = serde_json::to_string(record).context("cannot write the record as JSON")?;
    writeln!(out, "{line}").context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")
}

fn split_pair<'a>(text: &'a str, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name, value)),
        _ => bail!("{what} {text:?} is not NAME=VALUE"),
    }
}

fn code(a: CodeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut c = CodeCollector::new(&a.repo).detect_lockfiles(!a.no_lockfile_detect);
    if let Some(n) = a.repo_name {
        c = c.repo_name(n);
    }
    if let Some(v) = a.commit {
        c = c.commit(v);
    }
    if let Some(v) = a.reference {
        c = c.reference(v);
    }
    if let Some(v) = a.dirty {
        c = c.dirty(v);
    }
    for p in a.artifact {
        c = c.artifact(p);
    }
    for text in &a.artifact_digest {
        let (name, digest) = split_pair(text, "--artifact-digest")?;
        c = c.artifact_digest(name, digest);
    }
    for p in a.lockfile {
        c = c.lockfile(p);
    }
    for k in a.require_config {
        c = c.required_config(k);
    }
    let state = c.collect().map_err(code_error)?;
    if state.dirty {
        diag!(
            "warning: the working tree is dirty: commit {} alone does not rebuild this code",
            state.commit
        );
    }
    emit(out, &a.record.meta(), Body::Code(state))
}

/// A code collector error with the flag that fixes it.
fn code_error(e: CodeError) -> anyhow::Error {
    let fix = match &e {
        CodeError::NoRepoId { .. } => {
            "pass --repo-name NAME (e.g. --repo-name github.com/acme/orders-service)"
        }
        CodeError::GitUnavailable { .. } | CodeError::NotARepository { .. } => {
            "point --repo at the working tree, or pass --repo-name, --commit and --dirty"
        }
        CodeError::NoCommit { .. } => "commit first, or pass --commit",
        CodeError::InvalidCommit { .. } => "--commit takes a full 40 or 64 hex digit commit id",
        CodeError::ArtifactNotFound { .. }
        | CodeError::InvalidPattern { .. }
        | CodeError::NotAFile { .. } => {
            "check --artifact (a path or a glob pattern that matches a file)"
        }
        CodeError::InvalidDigest { .. } | CodeError::DuplicateArtifact { .. } => {
            "check --artifact-digest NAME=DIGEST (e.g. NAME=sha256:<64 hex digits>)"
        }
        _ => "",
    };
    if fix.is_empty() {
        anyhow::anyhow!("cannot collect the code state: {e}")
    } else {
        anyhow::anyhow!("cannot collect the code state: {e}; {fix}")
    }
}

fn config(a: ConfigArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut c = ConfigCollector::new().resolve_from_env(!a.no_env_resolve);
    if let Some(v) = a.config_version {
        c = c.version(v);
    }
    for p in a.file {
        c = c.file(p);
    }
    for p in a.dir {
        c = c.dir(p);
    }
    for n in a.env {
        c = c.env(n);
    }
    for p in a.env_prefix {
        c = c.env_prefix(p);
    }
    for text in &a.var {
        let (name, value) = split_pair(text, "--var")?;
        c = c.var(name, value);
    }
    for p in a.secret {
        c = c.secret(p);
    }
    for p in a.not_secret {
        c = c.not_secret(p);
    }
    for p in a.no_placeholder_check {
        c = c.no_placeholder_check(p);
    }
    if let Some(path) = &a.salt_in {
        let salt = Salt::load(path).context("cannot use --salt-in")?;
        c = c.salt(salt);
    }
    let collection = match c.collect() {
        Ok(collection) => collection,
        Err(rejection) => {
            let mut message = String::from("partial config is rejected, nothing was recorded:");
            for p in &rejection.problems {
                message.push_str(&format!("\n  - {p}"));
            }
            if rejection.total > rejection.problems.len() {
                message.push_str(&format!(
                    "\n  - and {} more",
                    rejection.total - rejection.problems.len()
                ));
            }
            bail!("{message}");
        }
    };
    for r in &collection.redactions {
        diag!("redacted {}: {}", r.key, r.reason);
    }
    for key in &collection.values_dropped {
        diag!("note: the clear value of {key} was left out so the snapshot fits one record");
    }
    let keeping = match &a.salt_out {
        Some(path) => SaltKeeping::SaveTo(path),
        None => SaltKeeping::Nowhere,
    };
    let record = match collection.into_record(&a.record.meta(), keeping) {
        Ok(record) => record,
        Err(e @ ConfigRecordError::SaltWouldBeLost { .. }) => {
            bail!("{e}; pass --salt-out FILE to keep it (or --salt-in FILE to reuse one)")
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(path) = &a.salt_out {
        diag!(
            "salt written to {} (keep it: it proves redacted values)",
            path.display()
        );
    }
    print_record(out, &record)
}

fn env(a: EnvArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut c = EnvironmentCollector::new().require_container_digest(a.require_image_digest);
    for text in &a.flag {
        let (name, value) = parse_flag(text)?;
        c = c.flag(name, value);
    }
    if let Some(d) = a.image_digest {
        c = c.container_image(d);
    }
    if let Some(v) = a.image_digest_env {
        c = c.container_image_env(v);
    }
    if a.no_runtime_probes {
        c = c.runtime_probes(Vec::new());
    }
    for text in &a.runtime {
        let (name, version) = split_pair(text, "--runtime")?;
        c = c.runtime(name, version);
    }
    if let Some(h) = a.hostname {
        c = c.hostname(h);
    }
    if let Some(kind) = a.time_source {
        c = c.time_source(pb::TimeSource {
            kind,
            synchronized: a.time_synchronized,
            max_error_nanos: a.time_max_error_ns,
        });
    }
    let collection = c.collect().context("cannot collect the environment")?;
    for w in &collection.warnings {
        diag!("warning: {w}");
    }
    emit(out, &a.record.meta(), Body::Environment(collection.state))
}

fn mutations(a: MutationArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let meta = a.record.meta();
    let Some(path) = &a.jsonl else {
        let input = mutation_from_flags(&a)?;
        let mutation = input.into_mutation().context("invalid mutation")?;
        return emit(out, &meta, Body::Mutation(mutation));
    };
    let explicit = a.kind.is_some()
        || a.id.is_some()
        || a.source.is_some()
        || a.sequence.is_some()
        || a.payload.is_some()
        || a.payload_file.is_some()
        || a.payload_digest.is_some()
        || a.kafka.is_some()
        || a.db.is_some()
        || a.other_ref.is_some()
        || !a.capture.is_empty()
        || !a.origin.is_empty();
    if explicit {
        bail!("--jsonl reads every field from the stream; give mutation fields either in it or as flags, not both");
    }
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        ))
    };
    let mut bad = 0usize;
    for result in MutationReader::new(reader) {
        match result {
            Ok(line) => {
                let number = line.line;
                let record = line
                    .record(&meta)
                    .with_context(|| format!("line {number}: not a record the ledger accepts"))?;
                print_record(out, &record)?;
            }
            Err(e) if a.keep_going => {
                diag!("error: {e}");
                bad += 1;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(
                    "bad mutation line; records before it were printed, none after (--keep-going skips bad lines)",
                ))
            }
        }
    }
    if bad > 0 {
        bail!("{bad} bad mutation lines were skipped");
    }
    Ok(())
}

fn mutation_from_flags(a: &MutationArgs) -> anyhow::Result<MutationInput> {
    let required = |v: &Option<String>, flag: &str| -> anyhow::Result<String> {
        v.clone()
            .with_context(|| format!("{flag} is required (or read mutations with --jsonl)"))
    };
    let mut input = MutationInput {
        payload: a.payload.clone(),
        payload_digest: a.payload_digest.clone(),
        ..MutationInput::default()
    };
    if let Some(path) = &a.payload_file {
        input = input.payload_file(path).map_err(payload_file_error)?;
    }
    Ok(MutationInput {
        kind: required(&a.kind, "--kind")?,
        id: required(&a.id, "--id")?,
        source: required(&a.source, "--source")?,
        sequence: a
            .sequence
            .context("--sequence is required (or read mutations with --jsonl)")?,
        origin: a.origin.clone(),
        kafka: a.kafka.as_deref().map(parse_kafka_ref).transpose()?,
        db: match (&a.db, &a.tx_id) {
            (Some(database), Some(tx)) => Some(DbInput {
                database: database.clone(),
                tx_id: TextOrNumber::Text(tx.clone()),
            }),
            _ => None,
        },
        other_ref: a.other_ref.clone(),
        captures: a.capture.clone(),
        ..input
    })
}

/// A payload file error in the words of the flags that gave it.
fn payload_file_error(e: MutationError) -> anyhow::Error {
    match e {
        MutationError::Conflicting { .. } => {
            anyhow::anyhow!("give at most one of --payload and --payload-file")
        }
        MutationError::Invalid { reason, .. } => {
            anyhow::anyhow!("--payload-digest is invalid: {reason}")
        }
        MutationError::PayloadFileMismatch {
            given,
            path,
            computed,
        } => anyhow::anyhow!(
            "--payload-digest {given} does not match {}, whose digest is {computed}",
            path.display()
        ),
        e => anyhow::Error::new(e),
    }
}

fn seed(a: SeedArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let bytes = if let Some(h) = &a.hex {
        capture::decode_seed(SeedText::Hex(h))?
    } else if let Some(b) = &a.base64 {
        capture::decode_seed(SeedText::Base64(b))?
    } else if let Some(n) = a.u64 {
        capture::decode_seed(SeedText::U64(n))?
    } else if a.random {
        capture::random_seed().to_vec()
    } else {
        bail!("give the seed: --hex, --base64, --u64 or --random");
    };
    let capture = capture::seed(&a.capture_id, &a.name, &bytes)?;
    emit(out, &a.record.meta(), Body::Nondeterminism(capture))
}

fn clock(a: ClockArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let unix_nanos = a
        .unix_nanos
        .unwrap_or_else(stateledger_collect::now_unix_nanos);
    let capture = capture::clock(&a.capture_id, &a.clock, unix_nanos)?;
    emit(out, &a.record.meta(), Body::Nondeterminism(capture))
}

fn external_call(a: ExternalCallArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request_bytes = a
        .request_file
        .as_deref()
        .map(read_payload_file)
        .transpose()?;
    let response_bytes = a
        .response_file
        .as_deref()
        .map(read_payload_file)
        .transpose()?;
    let request = match (&request_bytes, &a.request_digest) {
        (Some(b), _) => Some(CallData::Bytes(b)),
        (None, Some(d)) => Some(CallData::Digest(d)),
        (None, None) => None,
    };
    let response = match (&response_bytes, &a.response_digest) {
        (Some(b), _) => CallData::Bytes(b),
        (None, Some(d)) => CallData::Digest(d),
        (None, None) => bail!("give the response: --response-file or --response-digest"),
    };
    let capture = capture::external_call(
        &a.capture_id,
        &a.target,
        request,
        response,
        !a.no_keep_response,
    )?;
    emit(out, &a.record.meta(), Body::Nondeterminism(capture))
}

fn verify(a: VerifyRedactedArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let salt = Salt::load(&a.salt_file)?;
    let value = if let Some(v) = a.value {
        v.into_bytes()
    } else if let Some(name) = &a.value_env {
        std::env::var(name)
            .with_context(|| format!("environment variable {name} is not set"))?
            .into_bytes()
    } else if let Some(path) = &a.value_file {
        read_payload_file(path)?
    } else {
        bail!("give the value: --value, --value-env or --value-file");
    };
    verify_redacted(&value, &salt, &a.digest)?;
    if a.output.is_json() {
        writeln!(
            out,
            "{}",
            serde_json::json!({"ok": true, "digest": a.digest.trim()})
        )
    } else {
        writeln!(out, "ok: the value matches {}", a.digest.trim())
    }
    .context("cannot write to stdout")
}
