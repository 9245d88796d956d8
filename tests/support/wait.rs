//! Awaiting conditions with deadlines.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Ok`, at most `timeout`. `Err` carries a description of the
/// state seen, printed when the deadline passes.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
                );
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
