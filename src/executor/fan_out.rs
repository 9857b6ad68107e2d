//! At most `limit` of a set of futures at once, their results in the order of the items.

use std::future::Future;

use futures::future::join_all;
use tokio::sync::Semaphore;

/// Run `f` on every item, at most `limit` (at least 1) at a time; the results in item order.
pub async fn bounded<I, T, F, Fut>(items: I, limit: usize, f: F) -> Vec<T>
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = T>,
{
    let gate = Semaphore::new(limit.max(1));
    let gate = &gate;
    join_all(items.into_iter().map(|item| {
        let fut = f(item);
        async move {
            let _permit = gate.acquire().await.expect("the fan-out's semaphore is never closed");
            fut.await
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_at_once() {
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let out = super::bounded(0..10, 3, |i| {
            let (now, most) = (&now, &most);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10 * (10 - i))).await;
                now.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
