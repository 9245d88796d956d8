//! The high-level client.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use stateledger_core::documents::{ConsistencyDocument, Receipt, ReceiptSummary, VerifyError};
use stateledger_core::hash::Hash;
use stateledger_core::heads::{Head, HeadProof, HeadTerminal, SystemKey};
use stateledger_core::leaf::Leaf;
use stateledger_core::merkle::LeafIndex;
use stateledger_core::record::{pb, CheckedRecord};
use stateledger_core::state::{Boundary, ProvenLeaf, StateProof, StateProofSummary};
use stateledger_core::trust::{TrustPolicy, VerifiedCheckpoint};
use stateledger_proto::v1::ledger_client::LedgerClient as Grpc;
use tonic::transport::Channel;

use crate::checkpoints::CheckpointTracker;
use crate::connection::{leader_hint, retryable, ConnectOptions, Connections};
use crate::error::ClientError;

/// A record the ledger appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub index: u64,
    pub ledger_time: u64,
    pub leaf_hash: [u8; 32],
    /// The record was already there: an earlier attempt of this same request got through.
    pub duplicate: bool,
}

/// A failed call: the last status, and whether an earlier attempt may have reached the leader.
#[derive(Debug)]
struct CallError {
    status: tonic::Status,
    retried: bool,
}

/// A client of one cluster: it follows the leader for writes, retries without ever appending a
/// record twice, and verifies everything it returns against its [`TrustPolicy`] — including
/// that every checkpoint it sees is consistent with the ones it saw before. The crate's front
/// page has a complete example.
///
/// Every call gives up after [`ConnectOptions::timeout`] (retries included) with
/// [`ClientError::Unavailable`]; calls that wait for the cluster (a receipt's checkpoint, a state
/// proof's) take a `wait` the node may hold the request open for, which should be shorter.
#[derive(Debug)]
pub struct LedgerClient {
    conns: Connections,
    tracker: Mutex<CheckpointTracker>,
}

fn hashes(raw: &[Vec<u8>], endpoint: &str) -> Result<Vec<Hash>, ClientError> {
    raw.iter()
        .map(|h| {
            Hash::from_slice(h).ok_or_else(|| ClientError::Malformed {
                endpoint: endpoint.to_string(),
                reason: format!("proof hash of {} bytes", h.len()),
            })
        })
        .collect()
}

fn rejected(status: tonic::Status) -> ClientError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            ClientError::Unavailable(status.message().to_string())
        }
        code => ClientError::Rejected {
            code,
            message: status.message().to_string(),
        },
    }
}

fn existing_indexes(status: &tonic::Status) -> Vec<u64> {
    status
        .metadata()
        .get(stateledger_proto::metadata::EXISTING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default()
}

impl LedgerClient {
    pub fn new(options: ConnectOptions, policy: TrustPolicy) -> Result<LedgerClient, ClientError> {
        Ok(LedgerClient {
            conns: Connections::new(options)?,
            tracker: Mutex::new(CheckpointTracker::new(policy)),
        })
    }

    pub fn policy(&self) -> TrustPolicy {
        self.tracker().policy().clone()
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, CheckpointTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest checkpoint this client verified (its note text), to keep across runs.
    pub fn last_checkpoint(&self) -> Option<VerifiedCheckpoint> {
        self.tracker().last().cloned()
    }

    /// Starts from a checkpoint kept from an earlier run: every newer one must be consistent.
    pub fn restore_checkpoint(&self, note: &str) -> Result<(), ClientError> {
        self.tracker().restore(note)
    }

    /// Calls `f` on nodes until one answers: the preferred (leader) node first, following
    /// redirects, moving on from unreachable nodes, with backoff, until the deadline.
    async fn call<T, F, Fut>(&self, f: F) -> Result<(T, String, bool), CallError>
    where
        F: Fn(Grpc<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.conns.options().timeout;
        let mut retried = false;
        let mut backoff = Duration::from_millis(25);
        let mut last = tonic::Status::unavailable("no endpoint tried");
        loop {
            let mut redirected = false;
            for addr in self.conns.order() {
                let client = match self.conns.client(&addr) {
                    Ok(c) => c,
                    Err(e) => {
                        last = tonic::Status::invalid_argument(e.to_string());
                        continue;
                    }
                };
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let result = match tokio::time::timeout(remaining, f(client)).await {
                    Ok(r) => r,
                    Err(_) => Err(tonic::Status::deadline_exceeded("call timed out")),
                };
                match result {
                    Ok(resp) => {
                        self.conns.prefer(&addr);
                        return Ok((resp.into_inner(), addr, retried));
                    }
                    Err(status) => {
                        if let Some(leader) = leader_hint(&status) {
                            tracing::debug!(from = %addr, to = %leader, "following the leader");
                            self.conns.prefer(&leader);
                            redirected = true;
                            last = status;
                            break;
                        }
                        if status.code() == tonic::Code::FailedPrecondition
                            && status.message().contains("not the leader")
                        {
                            // No leader known yet: try others, then back off.
                            last = status;
                            continue;
                        }
                        if retryable(&status) {
                            if status.code() == tonic::Code::Unavailable {
                                self.conns.drop_channel(&addr);
                            }
                            retried = true;
                            last = status;
                            continue;
                        }
                        return Err(CallError { status, retried });
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CallError {
                    status: last,
                    retried,
                });
            }
            if !redirected {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    /// Signs records with `key` and submits them as one all-or-nothing request.
    pub async fn sign_and_submit(
        &self,
        records: Vec<pb::Record>,
        key: &SigningKey,
    ) -> Result<Vec<Submitted>, ClientError> {
        let signed = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                CheckedRecord::sign(r, key)
                    .map_err(|e| ClientError::Invalid(format!("record {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.submit(&signed).await
    }

    /// Submits signed records as one all-or-nothing request. Retries after ambiguous failures
    /// resend the same bytes, which the ledger recognises: a record is never appended twice.
    pub async fn submit(&self, records: &[CheckedRecord]) -> Result<Vec<Submitted>, ClientError> {
        let request = pb::SubmitRequest {
            records: records.iter().map(CheckedRecord::to_proto).collect(),
        };
        match self
            .call(|mut c| {
                let request = request.clone();
                async move { c.submit(request).await }
            })
            .await
        {
            Ok((resp, endpoint, _)) => {
                if resp.results.len() != records.len() {
                    return Err(ClientError::Malformed {
                        endpoint,
                        reason: format!(
                            "{} results for {} records",
                            resp.results.len(),
                            records.len()
                        ),
                    });
                }
                resp.results
                    .iter()
                    .map(|r| {
                        Ok(Submitted {
                            index: r.leaf_index,
                            ledger_time: r.ledger_time,
                            leaf_hash: r.leaf_hash.as_slice().try_into().map_err(|_| {
                                ClientError::Malformed {
                                    endpoint: endpoint.clone(),
                                    reason: "leaf hash is not 32 bytes".into(),
                                }
                            })?,
                            duplicate: false,
                        })
                    })
                    .collect()
            }
            Err(CallError { status, retried }) if status.code() == tonic::Code::AlreadyExists => {
                let indexes = existing_indexes(&status);
                if !retried || indexes.len() != records.len() {
                    return Err(ClientError::Duplicate { indexes });
                }
                // An earlier attempt was appended: report those leaves.
                let mut out = Vec::with_capacity(indexes.len());
                for index in indexes {
                    let leaf = self.entry(index).await?;
                    out.push(Submitted {
                        index,
                        ledger_time: leaf.ledger_time.0,
                        leaf_hash: leaf.leaf_hash().0,
                        duplicate: true,
                    });
                }
                Ok(out)
            }
            Err(e) => Err(rejected(e.status)),
        }
    }

    /// A leaf by index (unverified: use [`Self::receipt`] for a proof).
    pub async fn entry(&self, index: u64) -> Result<Leaf, ClientError> {
        let (resp, endpoint, _) = self
            .call(
                |mut c| async move { c.get_entry(pb::GetEntryRequest { leaf_index: index }).await },
            )
            .await
            .map_err(|e| rejected(e.status))?;
        Leaf::decode(&resp.leaf).map_err(|e| ClientError::Malformed {
            endpoint,
            reason: e.to_string(),
        })
    }

    /// A receipt for a leaf, verified against the trust policy and consistent with every
    /// checkpoint this client verified before.
    pub async fn receipt(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<(Receipt, ReceiptSummary), ClientError> {
        let wait_ms = wait.as_millis().min(u128::from(u32::MAX)) as u32;
        let (resp, endpoint, _) = self
            .call(|mut c| async move {
                c.get_receipt(pb::GetReceiptRequest {
                    leaf_index: index,
                    wait_ms,
                })
                .await
            })
            .await
            .map_err(|e| rejected(e.status))?;
        let leaf = Leaf::decode(&resp.leaf).map_err(|e| ClientError::Malformed {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let receipt = Receipt::new(
            &leaf,
            hashes(&resp.inclusion_proof, &endpoint)?,
            resp.checkpoint,
        );
        let policy = self.policy();
        let summary = receipt
            .verify(&policy)
            .map_err(|error| ClientError::Verify {
                endpoint: endpoint.clone(),
                error,
            })?;
        if summary.leaf.index.0 != index {
            return Err(ClientError::Malformed {
                endpoint,
                reason: format!("asked for leaf {index}, got leaf {}", summary.leaf.index),
            });
        }
        self.observe(summary.checkpoint.clone()).await?;
        Ok((receipt, summary))
    }

    /// A checkpoint with at least `min_size` leaves covering `covering_time` (0: any), verified
    /// and consistent with every checkpoint this client verified before.
    pub async fn checkpoint(
        &self,
        min_size: u64,
        covering_time: u64,
        wait: Duration,
    ) -> Result<VerifiedCheckpoint, ClientError> {
        let wait_ms = wait.as_millis().min(u128::from(u32::MAX)) as u32;
        let (resp, endpoint, _) = self
            .call(|mut c| async move {
                c.get_checkpoint(pb::GetCheckpointRequest {
                    min_size,
                    covering_time,
                    wait_ms,
                    at_size: 0,
                })
                .await
            })
            .await
            .map_err(|e| rejected(e.status))?;
        let verified = self.verify_note(&resp.checkpoint, &endpoint)?;
        self.observe(verified.clone()).await?;
        Ok(verified)
    }

    /// The published checkpoint of exactly `size` leaves, verified and consistent with every
    /// checkpoint this client verified before. A size at which no checkpoint was published is
    /// [`ClientError::Rejected`] with `NotFound`, whose message names the published sizes
    /// nearest to it.
    pub async fn checkpoint_at(&self, size: u64) -> Result<VerifiedCheckpoint, ClientError> {
        if size == 0 {
            return Err(ClientError::Invalid(
                "no checkpoint is published at size 0: the empty log is a prefix of every log"
                    .into(),
            ));
        }
        let (resp, endpoint, _) = self
            .call(|mut c| async move {
                c.get_checkpoint(pb::GetCheckpointRequest {
                    min_size: 0,
                    covering_time: 0,
                    wait_ms: 0,
                    at_size: size,
                })
                .await
            })
            .await
            .map_err(|e| rejected(e.status))?;
        let verified = self.verify_note(&resp.checkpoint, &endpoint)?;
        if verified.checkpoint.size.0 != size {
            return Err(ClientError::Malformed {
                endpoint,
                reason: format!(
                    "asked for the checkpoint of size {size}, got size {}",
                    verified.checkpoint.size
                ),
            });
        }
        self.observe(verified.clone()).await?;
        Ok(verified)
    }

    pub fn verify_note(
        &self,
        note: &str,
        endpoint: &str,
    ) -> Result<VerifiedCheckpoint, ClientError> {
        self.policy()
            .verify_checkpoint(note)
            .map_err(|e| ClientError::Verify {
                endpoint: endpoint.to_string(),
                error: VerifyError::from(e),
            })
    }

    /// Checks a verified checkpoint against the last one with a consistency proof and keeps the
    /// newer one. A failure means the log was rewritten or forked.
    pub async fn observe(&self, checkpoint: VerifiedCheckpoint) -> Result<(), ClientError> {
        let needed = self.tracker().proof_needed(&checkpoint);
        let proof = match needed {
            None => Vec::new(),
            Some(n) if n.old == n.new => Vec::new(),
            Some(n) => self.consistency_proof(n.old, n.new).await?,
        };
        self.tracker().accept(checkpoint, &proof)
    }

    /// A consistency proof between two tree sizes (not verified on its own: see
    /// [`Self::consistency_document`]).
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ClientError> {
        let (resp, endpoint, _) = self
            .call(|mut c| async move {
                c.get_consistency_proof(pb::GetConsistencyProofRequest {
                    old_size: old,
                    new_size: new,
                })
                .await
            })
            .await
            .map_err(|e| rejected(e.status))?;
        hashes(&resp.proof, &endpoint)
    }

    /// A consistency document between two verified checkpoints, verified.
    pub async fn consistency_document(
        &self,
        old: &VerifiedCheckpoint,
        new: &VerifiedCheckpoint,
    ) -> Result<ConsistencyDocument, ClientError> {
        let proof = self
            .consistency_proof(old.checkpoint.size.0, new.checkpoint.size.0)
            .await?;
        let doc = ConsistencyDocument::new(old.note.to_text(), new.note.to_text(), proof);
        doc.verify(&self.policy())
            .map_err(|error| ClientError::Verify {
                endpoint: "consistency proof".into(),
                error,
            })?;
        Ok(doc)
    }

    /// A system's leaves from `from` on (unverified listing; state proofs verify).
    pub async fn system_entries(
        &self,
        system: &str,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<Leaf>, bool), ClientError> {
        let system = system.to_string();
        let (resp, endpoint, _) = self
            .call(|mut c| {
                let system = system.clone();
                async move {
                    c.list_system_entries(pb::ListSystemEntriesRequest {
                        system,
                        from_index: from,
                        limit,
                    })
                    .await
                }
            })
            .await
            .map_err(|e| rejected(e.status))?;
        let leaves = resp
            .leaves
            .iter()
            .map(|b| {
                Leaf::decode(b).map_err(|e| ClientError::Malformed {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((leaves, resp.more))
    }

    /// The raw material for a state proof of `system` at ledger time `at` (verify it with
    /// `stateledger_core`'s state proof).
    pub async fn system_history(
        &self,
        system: &str,
        at: u64,
        wait: Duration,
    ) -> Result<(pb::GetSystemHistoryResponse, String), ClientError> {
        let system = system.to_string();
        let wait_ms = wait.as_millis().min(u128::from(u32::MAX)) as u32;
        let (resp, endpoint, _) = self
            .call(|mut c| {
                let system = system.clone();
                async move {
                    c.get_system_history(pb::GetSystemHistoryRequest {
                        system,
                        at_time: at,
                        wait_ms,
                    })
                    .await
                }
            })
            .await
            .map_err(|e| rejected(e.status))?;
        Ok((resp, endpoint))
    }

    /// Reconstructs S(T) for `system` at ledger time `at` with a state proof: the node serves
    /// proven material, and this client checks every leaf, the back-link chain, the completeness
    /// boundary and the checkpoint, then folds the state itself. A node that leaves out a record
    /// of the system is caught here. The checkpoint must also be consistent with every one this
    /// client verified before.
    pub async fn state_proof(
        &self,
        system: &str,
        at: u64,
        wait: Duration,
    ) -> Result<(StateProof, StateProofSummary), ClientError> {
        let (resp, endpoint) = self.system_history(system, at, wait).await?;
        let (proof, summary) =
            state_proof_from_history(system, at, resp, &endpoint, &self.policy())?;
        self.observe(summary.checkpoint.clone()).await?;
        Ok((proof, summary))
    }

    /// Names of systems in the ledger close to `name`, closest first: a hint for a system with
    /// no record (a typo), not proven.
    pub async fn systems_near(&self, name: &str, limit: u32) -> Result<Vec<String>, ClientError> {
        let name = name.to_string();
        let (resp, _, _) = self
            .call(|mut c| {
                let name = name.clone();
                async move {
                    c.list_systems_near(pb::ListSystemsNearRequest { name, limit })
                        .await
                }
            })
            .await
            .map_err(|e| rejected(e.status))?;
        Ok(resp.systems)
    }

    /// Status of one node (by endpoint) or of whichever node answers first.
    pub async fn status(&self, endpoint: Option<&str>) -> Result<pb::StatusResponse, ClientError> {
        match endpoint {
            Some(addr) => {
                let mut c = self.conns.client(addr)?;
                let resp = tokio::time::timeout(
                    self.conns.options().timeout,
                    c.status(pb::StatusRequest {}),
                )
                .await
                .map_err(|_| ClientError::Unavailable(format!("{addr} did not answer")))?
                .map_err(rejected)?;
                Ok(resp.into_inner())
            }
            None => Ok(self
                .call(|mut c| async move { c.status(pb::StatusRequest {}).await })
                .await
                .map_err(|e| rejected(e.status))?
                .0),
        }
    }
}

fn proven_leaf(p: &pb::ProvenLeaf, endpoint: &str) -> Result<ProvenLeaf, ClientError> {
    let leaf = Leaf::decode(&p.leaf).map_err(|e| ClientError::Malformed {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    })?;
    Ok(ProvenLeaf {
        leaf_index: leaf.index.0,
        leaf: p.leaf.clone(),
        inclusion_proof: hashes(&p.inclusion_proof, endpoint)?,
    })
}

/// Turns a node's history answer into a verified state proof (see
/// [`LedgerClient::state_proof`]). Public so tests can feed it tampered answers.
pub fn state_proof_from_history(
    system: &str,
    at: u64,
    resp: pb::GetSystemHistoryResponse,
    endpoint: &str,
    policy: &stateledger_core::trust::TrustPolicy,
) -> Result<(StateProof, StateProofSummary), ClientError> {
    let malformed = |reason: &str| ClientError::Malformed {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let leaves = resp
        .leaves
        .iter()
        .map(|p| proven_leaf(p, endpoint))
        .collect::<Result<Vec<_>, _>>()?;
    let boundary = match (&resp.next, &resp.head_proof) {
        (Some(next), _) => Boundary::Next(proven_leaf(next, endpoint)?),
        (None, Some(h)) => {
            let terminal = match &h.terminal {
                Some(pb::head_proof::Terminal::Empty(_)) => HeadTerminal::Empty,
                Some(pb::head_proof::Terminal::Leaf(l)) => HeadTerminal::Leaf {
                    key: SystemKey(
                        Hash::from_slice(&l.key)
                            .ok_or_else(|| malformed("head key is not 32 bytes"))?,
                    ),
                    head: Head {
                        index: LeafIndex(l.head_index),
                        count: l.count,
                    },
                },
                None => return Err(malformed("head proof without terminal")),
            };
            Boundary::Head(HeadProof {
                siblings: hashes(&h.siblings, endpoint)?,
                terminal,
            })
        }
        (None, None) => {
            return Err(malformed(
                "no completeness boundary (neither next leaf nor head proof)",
            ))
        }
    };
    StateProof::build(system, at, resp.checkpoint, leaves, boundary, policy).map_err(|error| {
        ClientError::Verify {
            endpoint: endpoint.to_string(),
            error,
        }
    })
}
