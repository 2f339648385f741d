//! HTTP tests: each test starts its own server on port 0 over its own fresh database and
//! speaks to it over the wire through `chepiao_api::Client` (`app::TestApp`'s methods). One
//! test binary for the crate (modules below) keeps link time down.

mod after_sale;
mod app;
mod checkin;
mod contract;
mod figures;
mod fuzz_corpora;
mod inventory;
mod nats;
mod network;
mod orders;
mod private_pg;
mod queue;
mod refund;
mod robustness;
mod sale_day;
mod users;

/// Two `#[tokio::test]`s for an `async fn(Backend)`: on SQLite, and on PostgreSQL (which says
/// it was skipped, and why, when there is none).
#[macro_export]
macro_rules! on_both_backends {
    ($check:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $check($crate::app::Backend::Sqlite).await;
        }

        #[tokio::test]
        async fn $postgres() {
            if $crate::app::available($crate::app::Backend::Postgres, stringify!($postgres)) {
                $check($crate::app::Backend::Postgres).await;
            }
        }
    };
}
