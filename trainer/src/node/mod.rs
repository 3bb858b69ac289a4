//! The node: what it can schedule ([`devices`]), who may do what ([`config`]), the daemon that owns
//! the queue ([`daemon`], [`store`], [`sched`]), the sandbox jobs run in ([`sandbox`], [`shim`]), and
//! the socket API with its client ([`proto`], [`client`]).

pub(crate) mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod devices;
pub mod jobs;
pub mod proto;
pub mod sandbox;
pub mod sched;
pub mod shim;
pub mod slurm;
pub mod store;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] config::NodeConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl NodeError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        NodeError::Io { path: path.display().to_string(), source }
    }
}

impl From<rusqlite::Error> for NodeError {
    fn from(e: rusqlite::Error) -> Self {
        NodeError::Store(store::StoreError::Sql(e))
    }
}
