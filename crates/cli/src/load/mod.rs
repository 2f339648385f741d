//! `chepiao load`: virtual users buying tickets over HTTP against a running server, then an
//! invariant audit read from the server's store.
//!
//! - [`args`]: what to run; [`users`]: the virtual users (accounts, passengers, a device and an
//!   address each);
//! - [`orders`]: orders and full purchases, at full speed or a set rate;
//! - [`rush`]: the Spring Festival opening through a sale's waiting room, whose join storm is
//!   [`storm`];
//! - [`nat`]: people behind one address (carrier-grade NAT) without device ids, one order each;
//! - [`soak`]: a long run at a set rate with a sale day's mix (pay, cancel, expire, refund),
//!   reporting latency and the server's memory per window;
//! - [`stats`]: latency percentiles, answers by code, and the closing audit (I1: no seat
//!   segment in two live orders, one ticket per seat of every ticketed order; I2: every
//!   captured payment ticketed or refunded).

pub mod args;
pub mod nat;
pub mod orders;
pub mod rush;
pub mod soak;
pub mod stats;
pub mod storm;
pub mod users;

use anyhow::Context;
use args::{LoadArgs, Scenario};
use chepiao_domain::Network;

pub async fn run(args: LoadArgs, network: Network) -> anyhow::Result<()> {
    let store = if args.no_audit {
        None
    } else {
        let config = crate::config::load(&args.flags)?;
        Some(crate::config::open_store(&config).await?)
    };
    match args.scenario {
        Scenario::Orders => orders::run(&args, &network, store).await,
        Scenario::Soak => soak::run(&args, &network, store).await,
        Scenario::Nat => nat::run(&args, &network).await,
        Scenario::Rush => {
            let config = crate::config::load(&args.flags)?;
            let store = store.context("the rush creates its users in the server's store: drop --no-audit")?;
            rush::run(&args, &config, &network, store).await
        }
    }
}
