//! The determinism contract (docs/DETERMINISM.md): the rules S(T) must satisfy for exact
//! reconstruction, each violation reported with the record and the rule — never guessed around.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::state::model::SystemState;

/// Something the rules found. Impossible findings make the verdict `impossible`; warnings only
/// lower the advisory confidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Finding {
    /// No record of a dimension (code, config, environment) up to T.
    MissingDimension { dimension: String },
    /// A source's mutation sequence skips numbers: `expected` was next, `found` came.
    MutationGap {
        source: String,
        expected: u64,
        found: u64,
        leaf_index: u64,
    },
    /// A source's mutation sequence repeats or goes back.
    MutationOrder {
        source: String,
        expected: u64,
        found: u64,
        leaf_index: u64,
    },
    /// A mutation depends on a capture (seed, clock reading, external call) that was never
    /// recorded.
    UndeclaredNondeterminism {
        mutation_id: String,
        capture_id: String,
        leaf_index: u64,
    },
    /// One capture id recorded with different values.
    ConflictingCapture {
        capture_id: String,
        leaf_indexes: Vec<u64>,
    },
    /// The running code requires configuration keys the configuration snapshot lacks.
    PartialConfig {
        missing_keys: Vec<String>,
        code_leaf: u64,
        config_leaf: Option<u64>,
    },
    /// Warning: the code was built from a dirty working tree.
    DirtyCode { leaf_index: u64 },
    /// Warning: the environment's clock was not synchronised.
    ClockUnsynchronized {
        leaf_index: u64,
        time_source: String,
    },
    /// Warning: mutations without a payload digest cannot be checked on replay.
    MutationsWithoutPayloadDigest { count: u64, first_leaf: u64 },
    /// Warning: a collector's observation time went backwards within a dimension.
    ObservedTimeRegression { dimension: String, leaf_index: u64 },
    /// Warning: a state digest claims a sequence no recorded mutation reached.
    StateDigestAhead {
        source: String,
        sequence: u64,
        recorded_up_to: u64,
        leaf_index: u64,
    },
}

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Impossible,
    Warning,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        match self {
            Finding::MissingDimension { .. }
            | Finding::MutationGap { .. }
            | Finding::MutationOrder { .. }
            | Finding::UndeclaredNondeterminism { .. }
            | Finding::ConflictingCapture { .. }
            | Finding::PartialConfig { .. } => Severity::Impossible,
            _ => Severity::Warning,
        }
    }

    /// Confidence points (of 100) this finding costs in advisory mode.
    pub fn weight(&self) -> u32 {
        match self {
            Finding::MissingDimension { .. } => 40,
            Finding::MutationGap { .. } | Finding::MutationOrder { .. } => 30,
            Finding::UndeclaredNondeterminism { .. } | Finding::ConflictingCapture { .. } => 30,
            Finding::PartialConfig { .. } => 30,
            Finding::DirtyCode { .. } => 10,
            Finding::ClockUnsynchronized { .. } => 5,
            Finding::MutationsWithoutPayloadDigest { .. } => 5,
            Finding::ObservedTimeRegression { .. } => 5,
            Finding::StateDigestAhead { .. } => 10,
        }
    }

    /// The rule's name, as in docs/DETERMINISM.md.
    pub fn rule(&self) -> &'static str {
        match self {
            Finding::MissingDimension { .. } => "missing_dimension",
            Finding::MutationGap { .. } => "mutation_gap",
            Finding::MutationOrder { .. } => "mutation_order",
            Finding::UndeclaredNondeterminism { .. } => "undeclared_nondeterminism",
            Finding::ConflictingCapture { .. } => "conflicting_capture",
            Finding::PartialConfig { .. } => "partial_config",
            Finding::DirtyCode { .. } => "dirty_code",
            Finding::ClockUnsynchronized { .. } => "clock_unsynchronized",
            Finding::MutationsWithoutPayloadDigest { .. } => "mutations_without_payload_digest",
            Finding::ObservedTimeRegression { .. } => "observed_time_regression",
            Finding::StateDigestAhead { .. } => "state_digest_ahead",
        }
    }

    /// A sentence a person can act on.
    pub fn describe(&self) -> String {
        match self {
            Finding::MissingDimension { dimension } => {
                format!("no {dimension} record up to T: the {dimension} dimension is missing")
            }
            Finding::MutationGap { source, expected, found, leaf_index } => format!(
                "mutation gap in source {source:?}: sequence {expected} was expected next but leaf {leaf_index} has {found} ({} missing)",
                found - expected
            ),
            Finding::MutationOrder { source, expected, found, leaf_index } => format!(
                "mutation order broken in source {source:?}: leaf {leaf_index} has sequence {found}, {expected} was expected (repeated or out of order)"
            ),
            Finding::UndeclaredNondeterminism { mutation_id, capture_id, leaf_index } => format!(
                "mutation {mutation_id:?} (leaf {leaf_index}) depends on capture {capture_id:?}, which was never recorded: its nondeterminism is undeclared"
            ),
            Finding::ConflictingCapture { capture_id, leaf_indexes } => {
                format!("capture {capture_id:?} was recorded with different values at leaves {leaf_indexes:?}")
            }
            Finding::PartialConfig { missing_keys, code_leaf, config_leaf } => match config_leaf {
                Some(c) => format!(
                    "partial config: the code (leaf {code_leaf}) requires {missing_keys:?}, absent from the configuration snapshot (leaf {c})"
                ),
                None => format!("partial config: the code (leaf {code_leaf}) requires {missing_keys:?} but no configuration was recorded"),
            },
            Finding::DirtyCode { leaf_index } => {
                format!("the code (leaf {leaf_index}) was built from a dirty working tree; its commit alone does not reproduce it")
            }
            Finding::ClockUnsynchronized { leaf_index, time_source } => format!(
                "the environment (leaf {leaf_index}) reports an unsynchronised clock (time source {time_source:?})"
            ),
            Finding::MutationsWithoutPayloadDigest { count, first_leaf } => format!(
                "{count} mutations (first at leaf {first_leaf}) have no payload digest; replay cannot check their payloads"
            ),
            Finding::ObservedTimeRegression { dimension, leaf_index } => {
                format!("the collector's observation time went backwards for {dimension} at leaf {leaf_index}")
            }
            Finding::StateDigestAhead { source, sequence, recorded_up_to, leaf_index } => format!(
                "state digest at leaf {leaf_index} claims source {source:?} reached sequence {sequence}, but mutations are recorded only up to {recorded_up_to}"
            ),
        }
    }
}

/// The outcome of the rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// "exact" or "impossible".
    pub result: String,
    /// Why exact reconstruction is impossible (empty when exact).
    pub reasons: Vec<Finding>,
    /// What lowers confidence without making it impossible.
    pub warnings: Vec<Finding>,
    /// Advisory confidence, 0 to 100.
    pub confidence: u32,
}

impl Verdict {
    pub fn is_exact(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Applies every rule to S(T).
pub fn check(state: &SystemState) -> Verdict {
    let mut findings = Vec::new();

    for (name, present) in [
        ("code", state.code.is_some()),
        ("config", state.config.is_some()),
        ("environment", state.environment.is_some()),
    ] {
        if !present {
            findings.push(Finding::MissingDimension {
                dimension: name.to_string(),
            });
        }
    }

    // Mutation sequences per source, with baselines (state digests marked baseline).
    enum Event<'a> {
        Mutation(u64, &'a crate::record::pb::Mutation),
        Baseline(&'a crate::record::pb::StateDigest),
    }
    let mut events: Vec<(u64, Event)> = state
        .mutations
        .iter()
        .map(|m| (m.leaf_index, Event::Mutation(m.leaf_index, &m.value)))
        .chain(
            state
                .state_digests
                .iter()
                .filter(|d| d.value.baseline)
                .map(|d| (d.leaf_index, Event::Baseline(&d.value))),
        )
        .collect();
    events.sort_by_key(|(i, _)| *i);
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, event) in &events {
        match event {
            Event::Baseline(d) => {
                next.insert(d.source.as_str(), d.sequence + 1);
            }
            Event::Mutation(leaf_index, m) => {
                let expected = next.get(m.source.as_str()).copied().unwrap_or(1);
                if m.sequence > expected {
                    findings.push(Finding::MutationGap {
                        source: m.source.clone(),
                        expected,
                        found: m.sequence,
                        leaf_index: *leaf_index,
                    });
                } else if m.sequence < expected {
                    findings.push(Finding::MutationOrder {
                        source: m.source.clone(),
                        expected,
                        found: m.sequence,
                        leaf_index: *leaf_index,
                    });
                }
                let n = next.entry(m.source.as_str()).or_insert(1);
                *n = (*n).max(m.sequence + 1);
            }
        }
    }

    // Captures: every declared capture recorded; one value per capture id.
    let mut captures: BTreeMap<&str, Vec<(u64, &crate::record::pb::Nondeterminism)>> =
        BTreeMap::new();
    for c in &state.nondeterminism {
        captures
            .entry(c.value.capture_id.as_str())
            .or_default()
            .push((c.leaf_index, &c.value));
    }
    for (id, recorded) in &captures {
        if recorded.iter().any(|(_, v)| *v != recorded[0].1) {
            findings.push(Finding::ConflictingCapture {
                capture_id: id.to_string(),
                leaf_indexes: recorded.iter().map(|(i, _)| *i).collect(),
            });
        }
    }
    for m in &state.mutations {
        for capture in &m.value.captures {
            if !captures.contains_key(capture.as_str()) {
                findings.push(Finding::UndeclaredNondeterminism {
                    mutation_id: m.value.id.clone(),
                    capture_id: capture.clone(),
                    leaf_index: m.leaf_index,
                });
            }
        }
    }

    // Configuration completeness for the running code.
    if let Some(code) = &state.code {
        let have: BTreeSet<&str> = state
            .config
            .as_ref()
            .map(|c| c.value.entries.iter().map(|e| e.key.as_str()).collect())
            .unwrap_or_default();
        let missing: Vec<String> = code
            .value
            .required_config
            .iter()
            .filter(|k| !have.contains(k.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            findings.push(Finding::PartialConfig {
                missing_keys: missing,
                code_leaf: code.leaf_index,
                config_leaf: state.config.as_ref().map(|c| c.leaf_index),
            });
        }
        if code.value.dirty {
            findings.push(Finding::DirtyCode {
                leaf_index: code.leaf_index,
            });
        }
    }
    if let Some(env) = &state.environment {
        if let Some(ts) = &env.value.time_source {
            if !ts.synchronized {
                findings.push(Finding::ClockUnsynchronized {
                    leaf_index: env.leaf_index,
                    time_source: ts.kind.clone(),
                });
            }
        }
    }
    let without: Vec<u64> = state
        .mutations
        .iter()
        .filter(|m| m.value.payload_digest.is_empty())
        .map(|m| m.leaf_index)
        .collect();
    if let Some(first) = without.first() {
        findings.push(Finding::MutationsWithoutPayloadDigest {
            count: without.len() as u64,
            first_leaf: *first,
        });
    }
    let mut last_observed: BTreeMap<&str, u64> = BTreeMap::new();
    let dims = state
        .mutations
        .iter()
        .map(|m| ("mutation", m.leaf_index, m.observed_at))
        .chain(
            state
                .nondeterminism
                .iter()
                .map(|m| ("nondeterminism", m.leaf_index, m.observed_at)),
        );
    let mut ordered: Vec<(&str, u64, u64)> = dims.collect();
    ordered.sort_by_key(|(_, i, _)| *i);
    for (dim, leaf_index, observed) in ordered {
        let last = last_observed.entry(dim).or_insert(0);
        if observed < *last {
            findings.push(Finding::ObservedTimeRegression {
                dimension: dim.to_string(),
                leaf_index,
            });
        }
        *last = (*last).max(observed);
    }
    for d in &state.state_digests {
        let reached = next.get(d.value.source.as_str()).map_or(0, |n| n - 1);
        if !d.value.baseline && d.value.sequence > reached {
            findings.push(Finding::StateDigestAhead {
                source: d.value.source.clone(),
                sequence: d.value.sequence,
                recorded_up_to: reached,
                leaf_index: d.leaf_index,
            });
        }
    }

    let (reasons, warnings): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|f| f.severity() == Severity::Impossible);
    let cost: u32 = reasons.iter().chain(&warnings).map(Finding::weight).sum();
    Verdict {
        result: if reasons.is_empty() {
            "exact"
        } else {
            "impossible"
        }
        .to_string(),
        reasons,
        warnings,
        confidence: 100u32.saturating_sub(cost),
    }
}
