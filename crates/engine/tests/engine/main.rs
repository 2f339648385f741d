//! The engine's integration tests, one binary: durability of the log and snapshots, the
//! state machine against a reference model, SIGKILL crash cycles, and a hot run under
//! concurrent load.

mod common;
mod concurrency;
mod crash;
mod durability;
mod model;
mod replicated;
