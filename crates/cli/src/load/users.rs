//! The virtual users of a load: accounts with passengers, each with a device and a client
//! address of its own (`X-Device-Id`, `X-Real-IP`, trusted from loopback), as real buyers
//! have: the risk checks see many people, not one machine.

use chepiao_api::{Client, headers};
use indicatif::{ProgressBar, ProgressStyle};

/// Passengers each virtual user registers.
pub const PASSENGERS_PER_USER: usize = 5;
/// Registrations in flight at once (each is an argon2 hash on the server).
const REGISTER_IN_FLIGHT: usize = 16;

pub struct Buyer {
    /// Calls as this user, from its device and address.
    pub api: Client,
    pub passengers: Vec<i64>,
}

/// A private address per virtual user.
pub fn client_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// `client` as virtual user `i` of the run tagged `tag`, once logged in with `token`.
pub fn as_user(client: &Client, token: &str, tag: &str, i: usize) -> Client {
    client
        .with_token(token)
        .with_header(headers::DEVICE_ID, &format!("load-device-{tag}-{i}"))
        .with_header(headers::REAL_IP, &client_ip(i))
}

async fn register(client: &Client, tag: &str, i: usize) -> anyhow::Result<Buyer> {
    let (name, password) = (format!("load{tag}u{i}"), "load-test-password");
    client.register(&name, password).await?;
    let token = client.login(&name, password).await?.token;
    let api = as_user(client, &token, tag, i);
    let mut passengers = Vec::with_capacity(PASSENGERS_PER_USER);
    for p in 0..PASSENGERS_PER_USER {
        let added = api.add_passenger(&format!("旅客{p}"), "PASSPORT", &format!("L{tag}{i:05}{p}")).await?;
        passengers.push(added.passenger_id);
    }
    Ok(Buyer { api, passengers })
}

/// Register `n` users over HTTP, a few at a time.
pub async fn setup(client: &Client, n: usize, tag: &str) -> anyhow::Result<Vec<Buyer>> {
    let bar = ProgressBar::new(n as u64).with_message("registering users");
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}").expect("valid template"));
    let mut users = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(REGISTER_IN_FLIGHT) {
        let bar = &bar;
        let made = futures_util::future::try_join_all(chunk.iter().map(|&i| async move {
            let b = register(client, tag, i).await;
            bar.inc(1);
            b
        }))
        .await?;
        users.extend(made);
    }
    bar.finish();
    Ok(users)
}
