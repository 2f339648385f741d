//! What every handler can reach: the sale's flow and the HTTP layer's own parts. Cheap to
//! clone (one `Arc`).

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use chepiao_flow::Flow;

use crate::config::Config;
use crate::hotsale::limits::IpLimits;
use crate::hotsale::risk::Risk;
use crate::hotsale::room::WaitingRoom;
use crate::node::NodeClaim;
use crate::security::admin::AdminKey;
use crate::security::auth::Auth;
use crate::security::gates::Gates;
use crate::security::pii::Pii;

#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

pub struct Shared {
    /// The sale: store, engine, network, clock, batchers, keys.
    pub flow: Arc<Flow>,
    pub config: Config,
    pub auth: Arc<Auth>,
    pub pii: Pii,
    pub gates: Gates,
    pub admin: AdminKey,
    /// The waiting rooms of the configured sales.
    pub room: Arc<WaitingRoom>,
    pub risk: Risk,
    pub ip_limits: Arc<IpLimits>,
    /// This node's claim on the database (its engine's id).
    pub claim: NodeClaim,
    /// The engine's shared log, when this node is one of a cluster.
    pub cluster: Option<Arc<chepiao_cluster::ClusterLog>>,
    /// A cluster's risk lists, shared through Redis.
    pub shared_lists: Option<Arc<crate::hotsale::shared_lists::SharedLists>>,
    /// Where this server listens (`http://127.0.0.1:8080`), set when it starts serving: a
    /// notify from the mock provider goes here (or to `public_url`), never where a request says.
    pub self_url: std::sync::OnceLock<String>,
    /// The waiting room's Server-Sent Events streams (capped, ended at shutdown).
    pub streams: Arc<crate::hotsale::streams::Streams>,
    /// Orders per second and the hottest runs, for the operator.
    pub live: crate::live::Live,
    /// Search answers kept for the next asker of the same journey (`search_cache_bytes_max`,
    /// `search_stale_ms`).
    pub searches: crate::search::SearchCache,
    /// Set when the server starts shutting down.
    pub shutting_down: tokio::sync::watch::Sender<bool>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Arc<Auth> {
        state.auth.clone()
    }
}
