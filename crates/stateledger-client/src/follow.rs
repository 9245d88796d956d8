//! Leader following: the one loop through which every call that may need the leader goes — the
//! ledger client's calls on the public port and the admin client's membership changes on the
//! cluster port. It tries the endpoints in order (the last one that answered, or the leader a
//! node named, first), follows a NOT_LEADER's leader hint at once, moves on from nodes that
//! cannot answer now, and backs off between rounds until the deadline. What a node's answer
//! means is read from its `ErrorDetails` (`connection::error_details`), never from its text.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::connection::not_leader;
use crate::error::ClientError;

/// Endpoints in the order to try them, the preferred (leader) one first.
#[derive(Debug)]
pub struct Endpoints {
    order: Mutex<Vec<String>>,
}

impl Endpoints {
    pub fn new(endpoints: Vec<String>) -> Endpoints {
        Endpoints {
            order: Mutex::new(endpoints),
        }
    }

    /// Endpoints in the order to try them.
    pub fn order(&self) -> Vec<String> {
        self.order.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Moves `addr` to the front (adding it if new).
    pub fn prefer(&self, addr: &str) {
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        order.retain(|a| a != addr);
        order.insert(0, addr.to_string());
    }
}

/// How answers on one kind of port are read.
#[derive(Clone, Copy, Debug)]
pub struct Port {
    /// The address a NOT_LEADER answer names for this port, if any.
    pub leader_hint: fn(&tonic::Status) -> Option<String>,
    /// Whether a failure is worth trying again, on this node or another.
    pub retryable: fn(&tonic::Status) -> bool,
}

/// A failed call: the last status, the endpoint that gave it, and whether an earlier attempt may
/// have reached the leader (and so have been carried out).
#[derive(Debug)]
pub struct CallError {
    pub status: tonic::Status,
    pub endpoint: String,
    pub retried: bool,
}

/// First wait between rounds when no node could serve the call; doubled up to
/// [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(25);
/// Longest wait between rounds.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Calls `f` on the endpoints until one answers or `timeout` passes (module comment). `connect`
/// gives the client for an endpoint; `gone` is told of an endpoint that answered UNAVAILABLE, so
/// its connection can be dropped. Returns the answer, the endpoint that gave it, and whether an
/// earlier attempt may have reached the leader.
pub async fn call_leader<C, T, F, Fut>(
    endpoints: &Endpoints,
    timeout: Duration,
    port: Port,
    connect: impl Fn(&str) -> Result<C, ClientError>,
    gone: impl Fn(&str),
    f: F,
) -> Result<(T, String, bool), CallError>
where
    F: Fn(C) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut retried = false;
    let mut backoff = BACKOFF_FIRST;
    let mut last = tonic::Status::unavailable("no endpoint tried");
    let mut last_endpoint = String::new();
    // Addresses that did not answer this call. A redirect to one of them is not followed again:
    // the leader's advertised address may be one this client cannot reach (its endpoints are
    // NAT'd or published ports, as in deploy/compose.yaml), and following it would send the
    // client round between a follower and that address until its deadline, never trying the
    // endpoints after the follower. It stays first in the order (it may come back); the round
    // just goes on to the other endpoints.
    let mut unreachable: HashSet<String> = HashSet::new();
    loop {
        let mut redirected = false;
        for addr in endpoints.order() {
            let client = match connect(&addr) {
                Ok(c) => c,
                Err(e) => {
                    last = tonic::Status::invalid_argument(e.to_string());
                    last_endpoint = addr;
                    continue;
                }
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = match tokio::time::timeout(remaining, f(client)).await {
                Ok(r) => r,
                Err(_) => Err(tonic::Status::deadline_exceeded("call timed out")),
            };
            let status = match result {
                Ok(resp) => {
                    endpoints.prefer(&addr);
                    return Ok((resp.into_inner(), addr, retried));
                }
                Err(status) => status,
            };
            if let Some(leader) = (port.leader_hint)(&status).filter(|l| *l != addr) {
                if unreachable.contains(&leader) {
                    tracing::debug!(from = %addr, to = %leader, "the leader named did not answer: trying the other endpoints");
                    last = status;
                    last_endpoint = addr;
                    continue;
                }
                tracing::debug!(from = %addr, to = %leader, "following the leader");
                endpoints.prefer(&leader);
                redirected = true;
                last = status;
                last_endpoint = addr;
                break;
            }
            if not_leader(&status) && status.code() == tonic::Code::FailedPrecondition {
                // Not the leader, and it names none: try others, then back off.
                last = status;
                last_endpoint = addr;
                continue;
            }
            if (port.retryable)(&status) {
                if status.code() == tonic::Code::Unavailable {
                    gone(&addr);
                    unreachable.insert(addr.clone());
                }
                retried = true;
                last = status;
                last_endpoint = addr;
                continue;
            }
            return Err(CallError {
                status,
                endpoint: addr,
                retried,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CallError {
                status: last,
                endpoint: last_endpoint,
                retried,
            });
        }
        if !redirected {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}
