//! What can go wrong in the metadata store, as [`StoreError`]: one variant per kind of failure a
//! caller reacts to differently (the database is unreachable, a migration failed, a stored value
//! is unreadable, a referenced row is missing, a value does not fit), and the redaction of
//! database URLs so that no message ever shows a password.

/// An error of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported database (`sqlite:` or `postgres:`) or cannot be
    /// parsed. The URL is shown without its password.
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be opened or reached (wrong host, credentials, missing
    /// directory, ...). The URL is shown without its password.
    #[error("cannot connect to the database {url}: {source}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A schema migration failed; the database is left at the previous version.
    #[error("schema migration {version} ({name}) failed: {source}")]
    Migrate {
        /// The migration's version.
        version: i64,
        /// What it does.
        name: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer fnvm: this build does not know its schema.
    #[error(
        "the database schema is at version {found}, newer than this build's {known}: upgrade fnvm"
    )]
    SchemaTooNew {
        /// The newest version applied to the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A statement failed (the database went away, a timeout, a constraint, ...).
    #[error("metadata store: {operation} failed: {source}")]
    Query {
        /// What the store was doing (`create_function`, `claim`, ...).
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value cannot be read back (an unknown status or platform, malformed JSON, a
    /// number out of range): the database was changed by something else than this store.
    #[error("metadata store: stored {what} is unreadable: {detail}")]
    Corrupt {
        /// Which value (`deployment 1234 status`, ...).
        what: String,
        /// Why it is unreadable.
        detail: String,
    },
    /// A number too large for the database (which stores signed 64-bit integers).
    #[error("{field} = {value} is too large to store (at most {max})", max = i64::MAX)]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
    },
    /// The function does not exist (for [`add_release`](super::MetadataStore::add_release)).
    #[error("function {function_id} does not exist")]
    FunctionNotFound {
        /// The function asked for.
        function_id: String,
    },
    /// The release does not exist or belongs to another function than the deployment's.
    #[error("release {release_id} is not a release of function {function_id}")]
    ReleaseNotFound {
        /// The release asked for.
        release_id: String,
        /// The function it should belong to.
        function_id: String,
    },
    /// A blob of this hash is already recorded with another size: the caller's hash or size is
    /// wrong (or SHA-256 has a collision).
    #[error("blob {sha256} is recorded with {stored} bytes, not {given}")]
    BlobSizeMismatch {
        /// The hash.
        sha256: String,
        /// The size on record.
        stored: u64,
        /// The size given.
        given: u64,
    },
    /// The connection receiving change notifications broke.
    #[error("receiving change notifications: {source}")]
    Notifications {
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The garbage collector is deleting these very bytes and did not finish within the wait:
    /// try the upload again.
    #[error("blob {sha256} is being collected; try again")]
    BlobBusy {
        /// The hash.
        sha256: String,
    },
    /// A release's hash is not 64 lowercase hex digits (the form every blob is known by).
    #[error("not a lowercase hex SHA-256: {sha256:?}")]
    InvalidSha256 {
        /// What was given (at most 80 characters of it).
        sha256: String,
    },
    /// The token hash is already registered to another organisation.
    #[error("this API token is already registered to another organisation")]
    TokenTaken,
}

impl StoreError {
    /// Whether trying again later may succeed: the database was unreachable, busy or timed out,
    /// as opposed to a problem with the data or the request (an HTTP API answers 503 to the
    /// first kind and 500 or 4xx to the others).
    pub fn is_transient(&self) -> bool {
        let source = match self {
            StoreError::Connect { source, .. }
            | StoreError::Query { source, .. }
            | StoreError::Migrate { source, .. } => source,
            _ => return false,
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(e) => is_busy(e.as_ref()) || is_pg_transient(e.as_ref()),
            _ => false,
        }
    }

    /// A [`StoreError::Query`] of `operation`.
    pub(crate) fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { operation, source }
    }
}

/// Whether a database error is SQLite's "database is locked" (`SQLITE_BUSY`, `SQLITE_LOCKED`
/// and their extended codes), which waiting may cure.
pub(crate) fn is_busy(e: &dyn sqlx::error::DatabaseError) -> bool {
    // PostgreSQL codes are five characters (`40001`); SQLite's are decimal integers.
    let Some(code) = e.code() else { return false };
    if code.len() == 5 {
        return false;
    }
    matches!(code.parse::<i32>(), Ok(c) if c & 0xff == 5 || c & 0xff == 6)
}

/// PostgreSQL errors that a retry may cure: serialization failure, deadlock, the server
/// shutting down or out of connections.
fn is_pg_transient(e: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(
        e.code().as_deref(),
        Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
    )
}

/// `url` with its password (in the user information or a `password=` query parameter)
/// replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    let url = redact_userinfo(url);
    let Some(query_start) = url.find('?') else {
        return url;
    };
    let (head, query) = url.split_at(query_start + 1);
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", query.join("&"))
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    // The last `@` ends the user information (a password may itself contain `@`, unencoded).
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:***{}",
        &url[..rest_start],
        &userinfo[..colon],
        &url[rest_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://fnvm:s3cret@db:5432/fnvm"),
            "postgres://fnvm:***@db:5432/fnvm"
        );
        assert_eq!(
            redact("postgres://fnvm:p@ss@db/fnvm?sslmode=require"),
            "postgres://fnvm:***@db/fnvm?sslmode=require"
        );
        assert_eq!(redact("postgres://fnvm@db/x"), "postgres://fnvm@db/x");
        assert_eq!(
            redact("sqlite:///var/lib/fnvm.db"),
            "sqlite:///var/lib/fnvm.db"
        );
        assert_eq!(redact("sqlite:x.db"), "sqlite:x.db");
        assert_eq!(
            redact("postgres://db/x?user=u&password=pw&sslmode=disable"),
            "postgres://db/x?user=u&password=***&sslmode=disable"
        );
    }
}
