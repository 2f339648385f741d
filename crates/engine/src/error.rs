//! What the engine's handle answers when it cannot do the work at all (as opposed to a
//! [`crate::command::Reject`], a refusal the state machine decided).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The shard's queue is full: back-pressure, retry later.
    #[error("the seat engine is busy; retry later")]
    Busy,
    /// The shard stopped (its log could not be written) or the engine is shutting down.
    #[error("the seat engine is unavailable: {0}")]
    Unavailable(String),
}
