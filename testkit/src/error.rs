//! The single error type of the testkit.

use std::fmt;

/// Everything that can go wrong while finding, starting or using the test server.
///
/// Every variant carries enough context to tell the user what to fix. The type is
/// `Clone` because the outcome of [`server`](crate::server) is cached per process
/// and handed to every caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TestkitError {
    /// `DATABASE_URL` is set, but the server it names did not answer.
    DatabaseUrlUnreachable {
        /// The URL from the environment, with any password masked.
        url: String,
        /// Why connecting or querying failed.
        reason: String,
    },
    /// No server was configured, none answered locally and none could be started.
    NoServer {
        /// One entry per resolution step that was tried, in order.
        tried: Vec<String>,
    },
    /// The process runs as root (which PostgreSQL refuses) and there is no
    /// unprivileged `postgres` system user to run a throwaway cluster as.
    RootWithoutPostgresUser,
    /// A step of starting the throwaway cluster failed.
    Throwaway {
        /// The step that failed, e.g. `initdb` or `pg_ctl start`.
        step: String,
        /// What the step reported.
        detail: String,
    },
    /// Connecting to a server failed.
    Connect {
        /// The URL, with any password masked.
        url: String,
        /// Why connecting failed.
        reason: String,
    },
    /// A helper service (PgBouncer, a TLS-enabled cluster) could not be started here,
    /// e.g. because its program is not installed. Tests that need it skip, saying so.
    ServiceUnavailable {
        /// The service, e.g. `pgbouncer`.
        service: String,
        /// Why it could not be started.
        reason: String,
    },
    /// A SQL statement failed.
    Query {
        /// The statement that failed.
        sql: String,
        /// The server's or driver's message.
        reason: String,
    },
}

impl TestkitError {
    pub(crate) fn throwaway(step: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::Throwaway {
            step: step.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn unavailable(service: &str, reason: impl fmt::Display) -> Self {
        Self::ServiceUnavailable {
            service: service.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn query(sql: &str, reason: impl fmt::Display) -> Self {
        Self::Query {
            sql: sql.to_owned(),
            reason: reason.to_string(),
        }
    }
}

const INSTALL_HINT: &str =
    "install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL";

impl fmt::Display for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DatabaseUrlUnreachable { url, reason } => write!(
                f,
                "DATABASE_URL is set to {url} but that server did not answer: {reason}"
            ),
            Self::NoServer { tried } => write!(
                f,
                "no PostgreSQL server found: {} — {INSTALL_HINT}",
                join_with_and(tried)
            ),
            Self::RootWithoutPostgresUser => write!(
                f,
                "cannot start a throwaway PostgreSQL cluster: this process runs as root, \
                 PostgreSQL refuses to run as root, and there is no `postgres` system user \
                 to run it as — create one (e.g. `useradd --system postgres`), \
                 run as an unprivileged user, or set DATABASE_URL"
            ),
            Self::Throwaway { step, detail } => write!(
                f,
                "cannot start a throwaway PostgreSQL cluster: {step} failed: {detail}"
            ),
            Self::Connect { url, reason } => write!(f, "cannot connect to {url}: {reason}"),
            Self::ServiceUnavailable { service, reason } => {
                write!(f, "cannot start {service}: {reason}")
            }
            Self::Query { sql, reason } => write!(f, "query `{sql}` failed: {reason}"),
        }
    }
}

impl std::error::Error for TestkitError {}

/// `a`, `a and b`, `a, b, and c`.
fn join_with_and(items: &[String]) -> String {
    match items {
        [] => String::from("nothing was tried"),
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_server_message_lists_every_step_and_the_fix() {
        let err = TestkitError::NoServer {
            tried: vec!["A".into(), "B".into(), "C".into()],
        };
        assert_eq!(
            err.to_string(),
            format!("no PostgreSQL server found: A, B, and C — {INSTALL_HINT}")
        );
    }

    #[test]
    fn join_with_and_handles_short_lists() {
        assert_eq!(join_with_and(&["a".into()]), "a");
        assert_eq!(join_with_and(&["a".into(), "b".into()]), "a and b");
    }
}
