//! Why a step of the sale refused or failed: one variant per meaning the API gives a code
//! (the server maps them once, in its `http::error`).

use chepiao_engine::EngineError;
use chepiao_store::StoreError;

/// Why a step of the sale refused or failed. Each variant is one meaning the API gives a code.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{0}")]
    BadParameter(String),
    #[error("{0}")]
    UnknownRun(String),
    #[error("{0}")]
    UnknownPassenger(String),
    #[error("{0}")]
    Departed(String),
    #[error("{0}")]
    OutsideSaleWindow(String),
    #[error("{0}")]
    SoldOut(String),
    #[error("{0}")]
    KeyReused(String),
    #[error("{0}")]
    UnknownOrder(String),
    #[error("{0}")]
    NotCancellable(String),
    #[error("{0}")]
    NotPayable(String),
    #[error("{0}")]
    UnknownChannel(String),
    #[error("{0}")]
    UnknownPayment(String),
    #[error("{0}")]
    MalformedNotify(String),
    #[error("{0}")]
    BadSignature(String),
    #[error("{0}")]
    StaleNotify(String),
    #[error("{0}")]
    NotifyReplayed(String),
    #[error("{0}")]
    AmountMismatch(String),
    #[error("{0}")]
    UnknownTicket(String),
    #[error("{0}")]
    NotRefundable(String),
    #[error("{0}")]
    NotRebookable(String),
    /// A rebook issued the ticket, and a ticket is rebooked once.
    #[error("{0}")]
    RebookedOnce(String),
    /// The user has an unpaid order (one at a time).
    #[error("{0}")]
    UnpaidOrder(String),
    /// A passenger would travel twice at once.
    #[error("{0}")]
    TripOverlap(String),
    /// The user cancelled too many orders today.
    #[error("{0}")]
    TooManyCancellations(String),
    #[error("{0}")]
    UnknownWish(String),
    #[error("{0}")]
    WishNotCancellable(String),
    #[error("{0}")]
    BadTicketCode(String),
    #[error("{0}")]
    WrongStation(String),
    #[error("{0}")]
    OutsideValidity(String),
    #[error("{0}")]
    AlreadyCheckedIn(String),
    #[error("{0}")]
    Revoked(String),
    /// The seat engine's queue is full, or a limit of it was reached: retry shortly.
    #[error("{0}")]
    Busy(String),
    /// A store or the engine cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corrupt data.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<EngineError> for FlowError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Busy => FlowError::Busy(e.to_string()),
            EngineError::Unavailable(_) => FlowError::Unavailable(e.to_string()),
        }
    }
}

pub type Result<T, E = FlowError> = std::result::Result<T, E>;
