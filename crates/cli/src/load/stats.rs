//! What a load run measured, and the invariant audit it ends with.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;

/// Most latency samples kept (one per order).
pub const SAMPLES_MAX: usize = 10_000_000;

#[derive(Default)]
pub struct Tally {
    /// Answers that were served (anything but a shed 503/429).
    pub latencies_us: Vec<u32>,
    /// Shed answers (503, 429): how fast the server said no.
    pub shed_us: Vec<u32>,
    pub answers: BTreeMap<String, u64>,
    pub paid: u64,
}

impl Tally {
    /// One answer: its latency, under served or shed, and its key in the answer counts.
    pub fn answer(&mut self, key: String, took_us: u32, shed: bool) {
        let sink = if shed { &mut self.shed_us } else { &mut self.latencies_us };
        if sink.len() < SAMPLES_MAX {
            sink.push(took_us);
        }
        *self.answers.entry(key).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.shed_us.extend(other.shed_us);
        self.paid += other.paid;
        for (k, v) in other.answers {
            *self.answers.entry(k).or_default() += v;
        }
    }
}

/// Microseconds since `start`, saturating.
pub fn elapsed_us(start: std::time::Instant) -> u32 {
    start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// The `p` quantile (0 to 1) of latencies in µs, sorted, in ms; 0 for none.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[i]) / 1000.0
}

/// Sort `v` and take its `p` quantile in ms.
pub fn pct(v: &mut [u32], p: f64) -> f64 {
    v.sort_unstable();
    percentile_ms(v, p)
}

pub fn summary(t: &mut Tally, took: Duration, orders: u64) {
    let secs = took.as_secs_f64();
    println!("orders: {orders} in {secs:.2} s = {:.0} orders/s (HTTP answers of any kind)", orders as f64 / secs);
    let created = t.answers.get("201").copied().unwrap_or(0);
    println!("  created {created} = {:.0} orders/s", created as f64 / secs);
    let l = &mut t.latencies_us;
    let (p50, p90, p99, p999, max) = (pct(l, 0.5), pct(l, 0.9), pct(l, 0.99), pct(l, 0.999), pct(l, 1.0));
    println!(
        "  order latency ms (served answers): p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  p99.9 {p999:.2}  max {max:.2}"
    );
    if !t.shed_us.is_empty() {
        let n = t.shed_us.len();
        let (p50, p99) = (pct(&mut t.shed_us, 0.5), pct(&mut t.shed_us, 0.99));
        println!("  shed (503/429): {n} answers = {:.0}/s; latency ms p50 {p50:.2}  p99 {p99:.2}", n as f64 / secs);
    }
    println!("  answers:");
    for (k, v) in &t.answers {
        println!("    {k:<24} {v}");
    }
}

/// I1 and I2 read from the server's store; an error when either is broken.
pub async fn audit(store: &dyn chepiao_store::Store) -> anyhow::Result<()> {
    let seats = chepiao_flow::audit::audit_seats(store).await?;
    let pay = store.payment_audit().await?;
    println!(
        "audit: {} orders ({} live), {} seat-segment holds, {} tickets; payments captured {}, ticketed {}, refunded {}, in flight {}",
        seats.orders,
        seats.live_orders,
        seats.seat_segments,
        seats.tickets,
        pay.captured,
        pay.ticketed,
        pay.refunded,
        pay.in_flight_total
    );
    if !seats.problems.is_empty() || pay.in_flight_total > 0 {
        for p in &seats.problems {
            println!("  VIOLATION {p}");
        }
        if pay.in_flight_total > 0 {
            println!("  VIOLATION I2: captured but neither ticketed nor refunded: {:?}", pay.in_flight);
        }
        bail!("the invariant audit failed");
    }
    println!("audit: I1 (no seat segment sold twice) and I2 (every captured payment ticketed or refunded) hold");
    Ok(())
}
