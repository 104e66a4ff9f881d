//! The shared vocabulary of crossdex: records, observations, pages of changes and the
//! connector API.
//!
//! This crate is deliberately small and stable. Connectors depend on it and on nothing
//! else of crossdex: they must not reach the store, the query engine or the binary. The
//! engine depends on it to receive what connectors produce. Add a type here only when
//! both sides need it.
//!
//! To write a connector: implement [`Connector`] (fetch pages, push them into the
//! [`PageSink`] the engine hands you, return a [`Checkpoint`]) and a
//! [`ConnectorFactory`] that turns the source's configuration table into your typed,
//! documented config struct (see [`config`] for the helpers); then list the factory
//! in the registry of `crates/service` (`registry.rs`).

#![warn(missing_docs)]

pub mod config;
mod connector;
mod record;

pub use connector::{
    Capabilities, CheckReport, Checkpoint, Connector, ConnectorError, ConnectorFactory, Page,
    PageSink, Rejection, SinkError, SourceContext, SyncMode, SyncOutcome, SyncRequest,
};
pub use record::{Entity, Observation, Record, global_id, is_valid_source_name};
