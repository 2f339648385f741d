//! What a store reports when it cannot answer, and the checks every backend shares.

/// Errors a store reports. Backends map their driver errors into these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// Migrations failed or the schema is newer than this binary.
    #[error("migration error: {0}")]
    Migration(String),
    /// The store holds a value the domain refuses (a corrupt or hand-edited row).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// A request exceeded an explicit limit of the store.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A write or read job panicked (a bug): it failed alone, the store goes on.
    #[error("store bug: {0}")]
    Panicked(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Values one batch call (`create_orders`, `apply_notifies`, ...) takes.
pub const CREATE_BATCH_MAX: usize = 256;

/// A batch call refuses more than [`CREATE_BATCH_MAX`] values.
pub fn check_batch_len(len: usize, what: &str) -> Result<()> {
    if len > CREATE_BATCH_MAX {
        return Err(StoreError::Limit(format!("at most {CREATE_BATCH_MAX} {what} per call")));
    }
    Ok(())
}

/// Parse a stored text, or report the row as corrupt.
pub fn parse<T: std::str::FromStr>(table: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| StoreError::Corrupt { table, detail: format!("{s:?}: {e}") })
}
