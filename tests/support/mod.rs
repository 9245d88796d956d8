//! Helpers for the end-to-end tests in `tests/`. The tests start real `stateledger` processes on
//! loopback, talk to them over real TLS (server-authenticated on the public port, mutual on the
//! cluster port), and clean up what they start: every node process is killed and reaped and every
//! temporary directory removed when its owner is dropped, also when a test panics.
//!
//! - [`binary`] finds (and if needed builds) the `stateledger` executable;
//! - [`cli`] runs it as a user does and keeps what it printed;
//! - [`ports`] picks free loopback port ranges;
//! - [`partition`] cuts nodes apart with iptables rules (root only), removed on drop;
//! - [`process`] runs one node process and kills it on drop;
//! - [`cluster`] is a dev cluster in a temporary directory: configs, nodes, clients, status;
//! - [`records`] builds and signs records;
//! - [`rpc`] makes raw gRPC calls (per-node clients, a raw-bytes codec);
//! - [`tmpfs`] gives a node a small disk of its own (root only), to fill it for real;
//! - [`wan`] places nodes and clients in regions joined by a delaying relay (root only);
//! - [`wait`] polls a condition until a deadline (tests await conditions, never fixed sleeps);
//! - [`writer`] is a background task that keeps submitting records and remembers every ack.

pub mod binary;
pub mod cli;
pub mod cluster;
pub mod partition;
pub mod ports;
pub mod process;
pub mod records;
pub mod rpc;
pub mod tmpfs;
pub mod wait;
pub mod wan;
pub mod writer;
