//! Free loopback ports for a dev cluster: node `i` listens on `base + i` (public) and
//! `base + 100 + i` (cluster).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Bases are drawn below Linux's ephemeral range (32768..) so outgoing connections do not take
/// them between the check and the node's bind.
const BASE_MIN: u16 = 11_000;
const BASE_MAX: u16 = 32_000;

/// A base port such that `base+1..=base+nodes` and `base+101..=base+100+nodes` bind now on
/// 127.0.0.1, and whose range no other cluster of this test process uses.
pub fn free_base_port(nodes: u16) -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        // Multiples of 200 so that two ranges of one process never overlap.
        let base = BASE_MIN + (rand::random::<u16>() % ((BASE_MAX - BASE_MIN) / 200)) * 200;
        {
            let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
            if !taken.get_or_insert_with(HashSet::new).insert(base) {
                continue;
            }
        }
        let all_free = (1..=nodes).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + 100 + i)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no free range of {nodes} port pairs found on 127.0.0.1");
}
