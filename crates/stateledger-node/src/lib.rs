//! A StateLedger node: the ledger state machine on sled, replicated with openraft over tonic
//! gRPC with rustls TLS, serving proofs and cosigning checkpoints.
//!
//! Architecture invariant: every effect on the outside world goes through a seam — storage
//! ([`store::Kv`]), time ([`clock::Clock`]), the Raft runtime ([`raft::Runtime`]) and the network
//! (tonic, which madsim replaces) — so the same code runs under the deterministic simulation.
#![forbid(unsafe_code)]

/// `known_bad!(switches, Name)`: whether the simulation-only known-bad switch
/// `known_bad::Switch::Name` is on in `switches` (a `known_bad::KnownBad`). Outside the
/// simulation it is `false` and `switches` is not even compiled, so a production build has no
/// known-bad code path.
macro_rules! known_bad {
    ($switches:expr, $switch:ident) => {{
        #[cfg(madsim)]
        let on = $switches.is_on($crate::known_bad::Switch::$switch);
        #[cfg(not(madsim))]
        let on = false;
        on
    }};
}

pub mod batcher;
pub mod checkpoint_wait;
pub mod checkpointer;
pub mod clock;
pub mod config;
#[cfg(not(madsim))]
pub mod conn_limit;
#[cfg(not(madsim))]
pub mod dev;
pub mod drain;
pub mod election;
pub mod genesis;
pub mod grpc;
#[cfg(madsim)]
pub mod known_bad;
pub mod ledger;
pub mod listen;
pub mod metrics;
pub mod node;
pub mod node_id;
pub mod node_parts;
pub mod raft;
pub mod recovery;
pub mod repair;
pub mod scrub;
pub mod sigcheck;
pub mod snapshot_receiver;
pub mod space;
pub mod start_error;
pub mod store;
pub mod tls;
#[cfg(not(madsim))]
pub mod wire;
