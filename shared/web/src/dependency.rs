//! Telling a dependency's failure (the database or NATS not answering: a retry may
//! succeed) from a request that can never succeed, so the first is answered 503 with
//! `Retry-After` (HL7 AE; a consumer retries without counting it towards dead
//! letters) and never a 500.

/// A dependency was unavailable: the work may succeed when retried.
#[derive(Debug, thiserror::Error)]
#[error("a dependency is unavailable: {0}")]
pub struct Unavailable(pub String);

/// Whether a database error says the database is unavailable, slow or busy, rather
/// than that the request was wrong.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| transient_code(&c)),
        _ => false,
    }
}

/// SQLSTATEs that a retry may cure: connection exceptions (08), insufficient
/// resources (53), operator intervention (57: a statement timeout, a shutdown, a
/// server still starting), serialization failures and deadlocks (40), a lock not
/// available (55P03).
fn transient_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code.starts_with("40")
        || code == "55P03"
}

/// Whether the database refused a value it can never store (a NUL byte, a string too
/// long, a number out of range): SQLSTATE class 22.
pub fn is_bad_value(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("22")))
}

/// Whether an error anywhere in `e`'s chain (a sqlx error, an [`Unavailable`], or a
/// boxed source) is a dependency being unavailable.
pub fn is_transient_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<Unavailable>() {
            return true;
        }
        if let Some(s) = err.downcast_ref::<sqlx::Error>() {
            return is_transient(s);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            );
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_and_connection_errors_are_transient() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::other(
            "reset"
        ))));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(transient_code("57014"), "statement timeout");
        assert!(transient_code("08006"), "connection failure");
        assert!(
            !transient_code("23505"),
            "unique violation is the request's"
        );
        assert!(!transient_code("22021"), "a NUL byte never fits");
        let wrapped: Box<dyn std::error::Error + Send + Sync> = Box::new(sqlx::Error::PoolTimedOut);
        assert!(is_transient_chain(wrapped.as_ref()));
        assert!(is_transient_chain(&Unavailable("nats".into())));
    }
}
