//! What goes into the state machine and what comes out. Commands change state and are written
//! to the log; queries only read and are not.

use chepiao_domain::{Layout, RunId, SeatClass, TrainType};
use serde::{Deserialize, Serialize};

/// A hold's id: a per-shard sequence number in the high bits, the shard in the low 8.
pub type HoldId = u64;

/// An idempotency key, as the caller derives it (e.g. a hash of user and client key).
pub type IdemKey = u128;

pub fn hold_shard(hold: HoldId) -> usize {
    (hold & 0xff) as usize
}

/// What a run looks like to the engine: its consist (from the train type) and its number of
/// segments. Sent with every request so that a command in the log is self-contained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunSpec {
    pub train_type: TrainType,
    pub segments: u8,
}

impl RunSpec {
    pub fn layout(&self) -> &'static Layout {
        Layout::for_type(self.train_type)
    }
}

/// One journey of a hold: `passengers` places in `class` on `run` from stop `from` to stop `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LegRequest {
    pub run: RunId,
    pub spec: RunSpec,
    pub from: u8,
    pub to: u8,
    pub class: SeatClass,
    pub passengers: u8,
    /// Wanted seat letters (`A`, `F`, `L`, ...), at most one per passenger.
    pub prefs: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Hold seats for every leg, or nothing. Expires `ttl_ms` after it is applied.
    Hold { key: IdemKey, legs: Vec<LegRequest>, ttl_ms: u64 },
    /// A held hold becomes sold (payment arrived).
    Confirm { key: IdemKey, hold: HoldId },
    /// A held hold gives its seats back (cancelled before payment).
    Release { key: IdemKey, hold: HoldId },
    /// One passenger's seat on one leg of a sold hold goes back on sale (a refund).
    Return { key: IdemKey, hold: HoldId, leg: u8, passenger: u8 },
}

impl Command {
    pub fn key(&self) -> IdemKey {
        match self {
            Command::Hold { key, .. }
            | Command::Confirm { key, .. }
            | Command::Release { key, .. }
            | Command::Return { key, .. } => *key,
        }
    }
}

/// The seats a hold got on one leg: one seat index per passenger (see `Layout::seat_at`).
pub type LegSeats = Vec<u16>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub hold: HoldId,
    pub expires_at_ms: u64,
    pub legs: Vec<LegSeats>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Reject {
    #[error("not enough seats on leg {leg}")]
    NotEnoughSeats { leg: u8 },
    #[error("standing places on leg {leg} are sold only once its seated class is sold out")]
    StandingNotOnSale { leg: u8 },
    #[error("no such hold")]
    UnknownHold,
    #[error("the hold expired")]
    HoldExpired,
    #[error("the hold was released")]
    HoldReleased,
    #[error("the hold is sold: refund returns its seats one by one")]
    AlreadySold,
    #[error("the hold is not sold")]
    NotSold,
    #[error("that seat was already returned")]
    AlreadyReturned,
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("limit reached: {0}")]
    Limit(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Held(Held),
    Confirmed,
    Released,
    Returned,
    Rejected(Reject),
}

/// Read-only questions; answered from memory, never logged.
#[derive(Clone, Debug)]
pub enum Query {
    /// Remaining places per class for [from, to).
    Remaining { run: RunId, spec: RunSpec, from: u8, to: u8 },
    /// Per seat of `class`, free for [from, to) or not.
    SeatMap { run: RunId, spec: RunSpec, from: u8, to: u8, class: SeatClass },
    /// A hold's state.
    Hold { hold: HoldId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    Held,
    Sold,
    Released,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// (class, remaining) for every class of the run, standing last.
    Remaining(Vec<(SeatClass, u32)>),
    /// First seat index of the class, then free-or-not per seat.
    SeatMap {
        first_seat: u16,
        free: Vec<bool>,
    },
    Hold(Option<(HoldState, u64)>),
    Invalid(String),
}
