//! chepiao's seat-inventory engine.
pub mod command;
pub mod inventory;
pub mod state;
