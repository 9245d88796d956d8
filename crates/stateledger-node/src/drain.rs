//! The drain-and-batch step shared by every group-commit loop (signature checks in `sigcheck.rs`,
//! proposals in `batcher.rs`, the Raft log syncer in `store/log_store.rs`): after the first item
//! arrives, take everything already queued behind it, without waiting, up to a weight limit. The
//! batch grows with the load while the previous batch is being worked on, and an idle queue adds
//! no latency.

use tokio::sync::mpsc;

/// A batch taken from a queue, and its total weight.
#[derive(Debug)]
pub struct Drained<T> {
    pub items: Vec<T>,
    pub weight: usize,
}

/// Takes `first` and the items queued behind it without waiting, as long as the batch weighs
/// less than `weight_max` (`weight` of each item, e.g. its record count). The item that reaches
/// the limit is still taken: a batch is never empty and always makes progress.
pub fn drain_behind<T>(
    rx: &mut mpsc::Receiver<T>,
    first: T,
    weight_max: usize,
    weight: impl Fn(&T) -> usize,
) -> Drained<T> {
    let mut total = weight(&first);
    let mut items = vec![first];
    while total < weight_max {
        match rx.try_recv() {
            Ok(item) => {
                total = total.saturating_add(weight(&item));
                items.push(item);
            }
            Err(_) => break,
        }
    }
    Drained {
        items,
        weight: total,
    }
}

/// Waits for the next item, then drains behind it ([`drain_behind`]); `None` once every sender
/// is gone and the queue is empty.
pub async fn recv_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    weight_max: usize,
    weight: impl Fn(&T) -> usize,
) -> Option<Drained<T>> {
    let first = rx.recv().await?;
    Some(drain_behind(rx, first, weight_max, weight))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_queued_up_to_the_weight_limit_and_never_waits() {
        let (tx, mut rx) = mpsc::channel(16);
        for n in [3, 4, 5, 6] {
            tx.send(n).await.expect("send");
        }
        let batch = recv_batch(&mut rx, 8, |n| *n).await.expect("batch");
        assert_eq!(
            batch.items,
            vec![3, 4, 5],
            "the item reaching the limit is taken"
        );
        assert_eq!(batch.weight, 12);
        let batch = recv_batch(&mut rx, 8, |n| *n).await.expect("batch");
        assert_eq!(batch.items, vec![6], "nothing else queued: no waiting");
        drop(tx);
        assert!(recv_batch(&mut rx, 8, |n| *n).await.is_none());
    }

    #[tokio::test]
    async fn a_first_item_over_the_limit_is_a_batch_of_one() {
        let (tx, mut rx) = mpsc::channel(4);
        tx.send(10).await.expect("send");
        tx.send(1).await.expect("send");
        let first = rx.recv().await.expect("first");
        let batch = drain_behind(&mut rx, first, 8, |n| *n);
        assert_eq!(batch.items, vec![10]);
    }
}
