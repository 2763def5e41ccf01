//! # durable-futures-engine
//!
//! The embedded durable-execution engine of durable-futures: the same handlers and the same
//! journal frames as on restate-server, durable on a local SQLite file with no server.

#![deny(missing_docs)]

pub mod engine;
pub mod model;
pub mod query;
pub mod store;
