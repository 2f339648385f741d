//! Why the server would not start.

use chepiao_store::Lease;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the store holds no rail network: run `chepiao import` first")]
    NoNetwork,
    #[error(transparent)]
    Store(#[from] chepiao_store::StoreError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("seat engine: {0}")]
    Engine(#[from] chepiao_engine::EngineError),
    #[error("the sale's flow: {0}")]
    Flow(#[from] chepiao_flow::FlowError),
    #[error("the engine's shared log: {0}")]
    Cluster(#[from] chepiao_cluster::ClusterError),
    #[error("{}", refusal(ours, lease))]
    OtherEngine { ours: String, lease: Box<chepiao_store::Lease> },
}

/// The refusal's text: whose the database is, and where to read why.
pub fn refusal(ours: &str, lease: &Lease) -> String {
    format!(
        "this database belongs to seat engine {} (claimed at {}, last seen at {} by {}); this node's engine is {ours}. \
         Each node's engine holds the whole seat inventory, so two nodes on one database would sell every seat twice: \
         chepiao runs one node per database (see docs/DEPLOY.md) unless every node runs the replicated engine \
         (`cluster = true`, docs/CLUSTER.md). To move the sale to this machine, stop the other node and move its \
         data directory's `engine` folder here.",
        lease.holder,
        chepiao_flow::rfc3339(lease.since_ms),
        chepiao_flow::rfc3339(lease.seen_at_ms),
        lease.instance
    )
}
