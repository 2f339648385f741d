//! [`Flow`]: the narrow context every step of the sale takes, and how it is built.

use std::sync::{Arc, RwLock};

use tokio::sync::{Mutex, MutexGuard};

use chepiao_domain::{Network, ServiceDate};
use chepiao_engine::{Clock, Engine};
use chepiao_store::{CreateOrder, NewOrder, NewPayment, Notify, NotifyOutcome, Store};

use crate::batch::{Batcher, store_batcher};
use crate::bus::{self, EventBus, NatsBus};
use crate::calendar::RunCalendar;
use crate::channels::{Channels, Mockpay};
use crate::config::FlowConfig;
use crate::error::{FlowError, Result};
use crate::issuer::Issuer;
use crate::passengers::PassengerCache;
use crate::relay::Relay;
use crate::signing::TicketSigner;
use crate::time::ms_to_utc;

/// Calls made at the same moment share one store call.
pub struct Batchers {
    /// New orders, recorded many per statement.
    pub orders: Batcher<NewOrder, CreateOrder>,
    /// New payments, recorded many per statement.
    pub payments: Batcher<NewPayment, ()>,
    /// Verified notifies, applied many per transaction.
    pub notifies: Batcher<Notify, NotifyOutcome>,
}

impl Batchers {
    /// Start the batching tasks (on the current runtime) in front of `store`.
    pub fn start(store: &Arc<dyn Store>) -> Batchers {
        Batchers {
            orders: store_batcher(store, |s, orders| s.create_orders(orders)),
            payments: store_batcher(store, |s, payments| {
                let n = payments.len();
                Box::pin(async move { s.create_payments(payments).await.map(|()| vec![(); n]) })
            }),
            notifies: store_batcher(store, |s, notifies| s.apply_notifies(notifies)),
        }
    }
}

/// The narrow context of every step of the sale (see the crate doc).
pub struct Flow {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub network: Arc<Network>,
    pub clock: Clock,
    pub config: FlowConfig,
    pub signer: Arc<TicketSigner>,
    pub channels: Channels,
    /// The development payment channel, when it is on.
    pub mockpay: Option<Arc<Mockpay>>,
    pub issuer: Arc<Issuer>,
    pub relay: Arc<Relay>,
    /// The NATS bus, when events go over JetStream (its consumer feeds the issuer).
    pub nats: Option<Arc<NatsBus>>,
    pub batchers: Batchers,
    /// Shared with the issuer, which reads the masked names for the QR codes from it.
    pub passengers: Arc<PassengerCache>,
    /// A user's placements, one at a time (the purchase rules read before they write).
    pub user_locks: UserLocks,
    calendar: RwLock<Arc<RunCalendar>>,
}

/// What [`Flow::new`] is made from.
pub struct FlowParts {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub network: Arc<Network>,
    pub clock: Clock,
    pub config: FlowConfig,
    pub signer: Arc<TicketSigner>,
    pub mockpay_secret: Vec<u8>,
    /// Whether the `mockpay` development channel is on.
    pub mockpay: bool,
    /// `(url, stream)` to carry outbox events over NATS JetStream; None: in-process.
    pub nats: Option<(String, String, usize)>,
}

impl Flow {
    /// Load the run calendar, connect the bus and wire the issuer, relay and batchers.
    pub async fn new(p: FlowParts) -> Result<Arc<Flow>> {
        // Hold ids SQL already knows are never handed out again, even by an engine directory
        // restored from an older copy.
        let known = p.store.hold_id_max().await?;
        p.engine.fence((known.max(0) as u64 >> 8) + 1).await?;
        let today = ServiceDate::today_in_china(ms_to_utc(p.clock.as_ref()() as i64));
        let calendar = RunCalendar::load(p.store.as_ref(), &p.network, today, p.config.sale_window_days).await?;
        let mockpay = p.mockpay.then(|| Arc::new(Mockpay::new(p.mockpay_secret, p.clock.clone())));
        let channels = match &mockpay {
            Some(m) => Channels::default().with(m.clone()),
            None => Channels::default(),
        };
        let passengers = Arc::new(PassengerCache::default());
        let issuer = Arc::new(Issuer {
            store: p.store.clone(),
            passengers: passengers.clone(),
            engine: p.engine.clone(),
            signer: p.signer.clone(),
            channels: channels.clone(),
            clock: p.clock.clone(),
            valid_before_s: p.config.ticket_valid_before_s as i64,
            seats_back: Arc::new(tokio::sync::Notify::new()),
        });
        let (bus, nats): (Arc<dyn EventBus>, _) = match &p.nats {
            Some((url, stream, replicas)) => {
                let nats = NatsBus::connect(url, stream, *replicas)
                    .await
                    .map_err(|e| FlowError::Unavailable(e.to_string()))?;
                let nats = Arc::new(nats);
                (nats.clone(), Some(nats))
            }
            None => (Arc::new(bus::InProcessBus { issuer: issuer.clone() }), None),
        };
        let redeliver_after_ms = p.config.event_redeliver_after_ms as i64;
        let relay =
            Arc::new(Relay::new(p.store.clone(), bus, p.clock.clone(), p.config.event_retry, redeliver_after_ms));
        Ok(Arc::new(Flow {
            batchers: Batchers::start(&p.store),
            store: p.store,
            engine: p.engine,
            network: p.network,
            clock: p.clock,
            config: p.config,
            signer: p.signer,
            channels,
            mockpay,
            issuer,
            relay,
            nats,
            passengers,
            user_locks: Default::default(),
            calendar: RwLock::new(Arc::new(calendar)),
        }))
    }

    /// Now, in ms since the Unix epoch, by the flow's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.as_ref()() as i64
    }

    /// The current run calendar (replaced at midnight).
    pub fn calendar(&self) -> Arc<RunCalendar> {
        self.calendar.read().expect("calendar lock is never poisoned").clone()
    }

    /// Swap in a fresh calendar (the sale window rolled).
    pub fn set_calendar(&self, calendar: RunCalendar) {
        *self.calendar.write().expect("calendar lock is never poisoned") = Arc::new(calendar);
    }
}

/// Locks a user's placements share (by user id modulo the stripes).
pub struct UserLocks {
    stripes: Vec<Mutex<()>>,
}

/// Stripes of [`UserLocks`]: users whose ids collide wait for each other, briefly.
const STRIPES: usize = 4_096;

impl Default for UserLocks {
    fn default() -> Self {
        UserLocks { stripes: (0..STRIPES).map(|_| Mutex::new(())).collect() }
    }
}

impl UserLocks {
    pub async fn lock(&self, user_id: i64) -> MutexGuard<'_, ()> {
        self.stripes[user_id.rem_euclid(STRIPES as i64) as usize].lock().await
    }
}
