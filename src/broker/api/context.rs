//! What every request handler shares: the broker it runs on and the cluster state. Kept apart from the network
//! side (`server.rs`) so that handlers depend on the state they serve, not on the connection loop.

use std::sync::Arc;

use crate::broker::state::ClusterCore;
use crate::broker::BrokerId;

/// What a request handler sees: which broker it runs on and the cluster they share.
pub(crate) struct BrokerContext {
    pub id: BrokerId,
    pub core: Arc<ClusterCore>,
}
