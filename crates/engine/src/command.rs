//! What goes into the state machine and what comes out. Commands change state and are written
//! to the log; queries only read and are not.

use chepiao_domain::{Layout, RunId, SeatClass, ServiceDate, TrainType};
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
    /// Hold seats for every leg, or nothing. Expires `ttl_ms` after it is applied. The key
    /// makes a retry answer the same (see `keys`).
    Hold { key: IdemKey, legs: Vec<LegRequest>, ttl_ms: u64 },
    /// A held hold becomes sold (payment arrived). `run` is the run of the hold's first leg,
    /// where its sale is kept: a repeat after the sale answers `Confirmed` again.
    Confirm { hold: HoldId, run: RunId },
    /// A held hold gives its seats back (cancelled before payment); a repeat answers `Released`.
    Release { hold: HoldId, run: RunId },
    /// One passenger's seat on leg `leg` (on `run`) of a sold hold goes back on sale (a
    /// refund); a repeat answers `Returned` and frees nothing.
    Return { hold: HoldId, run: RunId, leg: u8, passenger: u8 },
    /// Runs leave the engine: every run dated before `before`, and `runs` (arrived early).
    /// Holds on them end; later commands on them answer `RunRetired`.
    Retire { before: ServiceDate, runs: Vec<RunId> },
    /// Hold ids from here on are above `next_seq` (the highest one SQL knows, checked at
    /// start: an engine directory restored from an old copy never hands out an id again).
    Fence { next_seq: u64 },
}

impl Command {
    /// The kinds' names, by [`Command::kind_index`].
    pub const KINDS: [&'static str; 6] = ["hold", "confirm", "release", "return", "retire", "fence"];

    /// The command's place in declaration order (0 = hold … 5 = fence), for counts by kind.
    pub fn kind_index(&self) -> usize {
        match self {
            Command::Hold { .. } => 0,
            Command::Confirm { .. } => 1,
            Command::Release { .. } => 2,
            Command::Return { .. } => 3,
            Command::Retire { .. } => 4,
            Command::Fence { .. } => 5,
        }
    }

    /// The command's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
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
    #[error("the hold expired or was released")]
    HoldEnded,
    #[error("the hold is sold: refund returns its seats one by one")]
    AlreadySold,
    #[error("the hold is not sold")]
    NotSold,
    #[error("the run has left the engine (it departed)")]
    RunRetired,
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
    /// Runs that left the engine.
    Retired {
        runs: u32,
    },
    Fenced,
    Rejected(Reject),
}

/// Read-only questions; answered from memory, never logged.
#[derive(Clone, Debug)]
pub enum Query {
    /// Remaining places per class for [from, to).
    Remaining { run: RunId, spec: RunSpec, from: u8, to: u8 },
    /// Per seat of `class`, free for [from, to) or not.
    SeatMap { run: RunId, spec: RunSpec, from: u8, to: u8, class: SeatClass },
    /// Where hold `hold` (whose first leg is on `run`) stands.
    Hold { hold: HoldId, run: RunId },
    /// Held (unpaid) holds made before `made_before_ms`, oldest first, after hold `after`
    /// (0 from the start), at most `limit` ([`LIVE_HOLDS_PAGE_MAX`]).
    LiveHolds { made_before_ms: u64, after: HoldId, limit: u32 },
    /// Shard `shard`'s whole state as one digest, with the log position it holds: replicas
    /// at the same position must answer the same digest. Slow (it encodes the whole state).
    Digest { shard: u8 },
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    /// Waiting for payment, until `expires_at_ms`.
    Held { expires_at_ms: u64 },
    /// Sold (some of its first leg's seats not yet returned).
    Sold,
    /// Expired or released, or sold and wholly returned, or its run retired.
    Ended,
}

/// Most holds one `LiveHolds` answer lists.
pub const LIVE_HOLDS_PAGE_MAX: u32 = 10_000;

/// A held hold, as `LiveHolds` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveHold {
    pub hold: HoldId,
    /// The run of its first leg (what `Release` names).
    pub run: RunId,
    pub made_at_ms: u64,
    pub expires_at_ms: u64,
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
    /// None: this shard never handed out that hold id.
    Hold(Option<HoldState>),
    LiveHolds(Vec<LiveHold>),
    /// The state's digest after log position `lsn`.
    Digest {
        lsn: u64,
        digest: u64,
    },
    Invalid(String),
}
