//! Retrying the transient faults of registry, load balancer and monitoring calls (refused,
//! reset, timeout, 5xx, 429) with backoff for a bounded time (`registry.retry`).

use std::time::Duration;

use crate::http_body::error_chain;

/// The first wait before a retry; it doubles up to [`RETRY_DELAY_MAX`].
pub const RETRY_DELAY_FIRST: Duration = Duration::from_millis(200);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

/// A failed registry, load balancer or monitoring call: `transient` names a failure worth
/// another try (`connection refused`, `connection reset`, `timeout`, `HTTP 503`, ...);
/// `may_have_acted` says whether the service may have carried the call out before it failed
/// (a timeout, a reset after sending, a 5xx), as opposed to a clear refusal (a 4xx, an
/// explicit "no") or a call that never reached it (connection refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub msg: String,
    pub transient: Option<String>,
    pub may_have_acted: bool,
}

impl CallError {
    /// A transient failure; whether the service may have acted follows from the reason.
    pub fn transient(reason: impl Into<String>, msg: impl Into<String>) -> Self {
        let reason = reason.into();
        CallError {
            msg: msg.into(),
            may_have_acted: reason_may_have_acted(&reason),
            transient: Some(reason),
        }
    }

    /// A failure, transient for `reason`, or a lasting and clear one without it.
    pub fn new(msg: impl Into<String>, reason: Option<String>) -> Self {
        match reason {
            Some(reason) => CallError::transient(reason, msg),
            None => CallError::from(msg.into()),
        }
    }

    /// A lasting failure whose effect is unknown (a command that exited non-zero, a server
    /// set ready that never came UP).
    pub fn unknown(msg: impl Into<String>) -> Self {
        CallError {
            msg: msg.into(),
            transient: None,
            may_have_acted: true,
        }
    }

    /// The same failure, after a part of the call that did act (a drain that started).
    pub fn after_acting(mut self) -> Self {
        self.may_have_acted = true;
        self
    }
}

/// Whether a transient failure may have come after the service acted: a reset or a timeout
/// can follow a request that was carried out, a 5xx may have done part of its work; a refused
/// connection, a missing socket or a 429 did nothing.
fn reason_may_have_acted(reason: &str) -> bool {
    !matches!(
        reason,
        "connection refused" | "socket missing" | "connection failed" | "HTTP 429"
    )
}

/// A lasting, clear failure: the service did not act (or was never reached).
impl From<String> for CallError {
    fn from(msg: String) -> Self {
        CallError {
            msg,
            transient: None,
            may_have_acted: false,
        }
    }
}

impl From<&str> for CallError {
    fn from(msg: &str) -> Self {
        msg.to_string().into()
    }
}

impl From<CallError> for String {
    fn from(e: CallError) -> String {
        e.msg
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Whether an I/O error of a connection is worth another try.
pub fn io_transient(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Some("connection refused"),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Some("connection reset"),
        TimedOut => Some("timeout"),
        // A Unix socket is removed and made again while its server restarts.
        NotFound => Some("socket missing"),
        _ => None,
    }
}

/// Whether a failed HTTP request (no answer) is worth another try.
pub fn http_transient(e: &reqwest::Error) -> Option<&'static str> {
    let chain = error_chain(e).to_ascii_lowercase();
    if e.is_timeout() || chain.contains("timed out") {
        Some("timeout")
    } else if chain.contains("refused") {
        Some("connection refused")
    } else if chain.contains("reset") || chain.contains("connection closed") || chain.contains("broken pipe") {
        Some("connection reset")
    } else if e.is_connect() {
        Some("connection failed")
    } else {
        None
    }
}

/// Whether an HTTP answer's status is worth another try: 5xx and 429.
pub fn status_transient(status: u16) -> Option<String> {
    (status == 429 || (500..=599).contains(&status)).then(|| format!("HTTP {status}"))
}

/// What a retried call went through, for the step's message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retried {
    pub count: u32,
    /// The distinct transient failures, in the order first seen.
    pub reasons: Vec<String>,
}

impl Retried {
    /// ` after 3 retries (connection refused)`, or nothing when there was none.
    pub fn note(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        format!(" after {} ({})", self.counted(), self.reasons.join(", "))
    }

    fn counted(&self) -> String {
        match self.count {
            1 => "1 retry".to_string(),
            n => format!("{n} retries"),
        }
    }
}

/// Run `op` until it succeeds, fails for good (not transient), or `budget` has passed since
/// the first try: transient failures are tried again after 200 ms, doubling up to 5 s (the
/// last wait is cut to what is left of the budget). A zero budget tries once. The error says
/// what was retried, and may have acted if any try may have.
pub async fn retry<T, F, Fut>(budget: Duration, mut op: F) -> Result<(T, Retried), CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = RETRY_DELAY_FIRST;
    let mut retried = Retried::default();
    let mut acted = false;
    loop {
        let mut e = match op().await {
            Ok(v) => return Ok((v, retried)),
            Err(e) => e,
        };
        acted |= e.may_have_acted;
        e.may_have_acted = acted;
        let Some(reason) = e.transient.clone() else {
            if retried.count > 0 {
                e.msg = format!(
                    "{} (after {}: {})",
                    e.msg,
                    retried.counted(),
                    retried.reasons.join(", ")
                );
            }
            return Err(e);
        };
        if !retried.reasons.contains(&reason) {
            retried.reasons.push(reason);
        }
        let left = budget.saturating_sub(start.elapsed());
        if left.is_zero() {
            if !budget.is_zero() {
                e.msg = format!(
                    "{} (gave up after {} in {}: {})",
                    e.msg,
                    retried.counted(),
                    crate::units::human_duration(budget),
                    retried.reasons.join(", ")
                );
            }
            return Err(e);
        }
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(RETRY_DELAY_MAX);
        retried.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn refused() -> CallError {
        CallError::transient(
            "connection refused",
            "HAProxy runtime API at 127.0.0.1:1: Connection refused",
        )
    }

    /// A call that fails transiently every time is tried until the budget is spent (waits of
    /// 0.2, 0.4, 0.8, 1.6, 3.2 s, then 5 s, the last cut to what is left), then fails saying so.
    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_budget_is_spent() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let err = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(refused()) }
        })
        .await
        .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        // 0.2+0.4+0.8+1.6+3.2 = 6.2 s, four waits of 5 s to 26.2 s, then 3.8 s to 30 s.
        assert_eq!(tries.get(), 11);
        assert_eq!(
            err.msg,
            "HAProxy runtime API at 127.0.0.1:1: Connection refused \
             (gave up after 10 retries in 30.0s: connection refused)"
        );
        // Every try was refused: nothing reached the service.
        assert!(!err.may_have_acted);
    }

    /// A failure that is not transient (an HTTP 404, a refused HAProxy command) is not tried
    /// again, and its message is the call's own.
    #[tokio::test(start_paused = true)]
    async fn does_not_retry_a_4xx() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let err = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(CallError::from("PUT http://r/out answered 404: no such service")) }
        })
        .await
        .unwrap_err();
        assert_eq!(tries.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(err.msg, "PUT http://r/out answered 404: no such service");
        assert!(!err.may_have_acted);
    }

    /// After transient failures the call succeeds, and the note says what was retried.
    #[tokio::test(start_paused = true)]
    async fn succeeds_after_transient_failures() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let (v, retried) = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                match n {
                    1 | 3 => Err(refused()),
                    2 => Err(CallError::transient("HTTP 503", "answered 503")),
                    _ => Ok("UP in HAProxy"),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, "UP in HAProxy");
        assert_eq!(tries.get(), 4);
        assert_eq!(start.elapsed(), Duration::from_millis(200 + 400 + 800));
        assert_eq!(
            format!("{v}{}", retried.note()),
            "UP in HAProxy after 3 retries (connection refused, HTTP 503)"
        );
    }

    /// A failure for good after transient ones says how many retries came before it.
    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_after_retries_names_them() {
        let tries = Cell::new(0);
        let err = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                if n == 1 {
                    Err::<(), _>(refused())
                } else {
                    Err("HAProxy answered: No such server.".into())
                }
            }
        })
        .await
        .unwrap_err();
        assert_eq!(tries.get(), 2);
        assert_eq!(
            err.msg,
            "HAProxy answered: No such server. (after 1 retry: connection refused)"
        );
    }

    /// `registry.retry: 0` tries once, and the message is the call's own.
    #[tokio::test(start_paused = true)]
    async fn a_zero_budget_tries_once() {
        let tries = Cell::new(0);
        let err = retry(Duration::ZERO, || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(refused()) }
        })
        .await
        .unwrap_err();
        assert_eq!(tries.get(), 1);
        assert_eq!(err.msg, "HAProxy runtime API at 127.0.0.1:1: Connection refused");
    }

    #[test]
    fn statuses_worth_another_try() {
        for (status, transient) in [
            (400, false),
            (401, false),
            (404, false),
            (409, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (599, true),
        ] {
            assert_eq!(status_transient(status).is_some(), transient, "{status}");
        }
    }

    /// A call that timed out once and was then refused for good may have acted: the first try
    /// may have been carried out.
    #[tokio::test(start_paused = true)]
    async fn an_error_after_a_try_that_may_have_acted_may_have_acted() {
        let tries = Cell::new(0);
        let err = retry(Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                if n == 1 {
                    Err::<(), _>(CallError::transient("timeout", "no answer within 10s"))
                } else {
                    Err("answered 404".into())
                }
            }
        })
        .await
        .unwrap_err();
        assert!(err.may_have_acted, "{err:?}");
    }
}
