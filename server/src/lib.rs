//! The Lakehouse server: an Arrow Flight SQL service over DataFusion and the Lakehouse catalog.
//!
//! - [`cli`]: the `lakehouse` command line ([`cli::run`] is all `main` calls);
//! - [`config`]: `serve` configuration (flags > `LAKEHOUSE_*` env > TOML file > defaults);
//! - [`server`]: [`Server`], which serves on an already-bound listener;
//! - [`query`]: the DataFusion session over the catalog;
//! - [`distributed`]: the coordinator and worker sides of distributed execution;
//! - [`flight`]: the Flight SQL commands, one module each;
//! - [`doctor`]: `lakehouse doctor`'s start-up checks;
//! - [`observability`]: metrics, health, the audit log;
//! - [`auth`]: users, roles, Basic logins and bearer tokens;
//! - [`error`]: the one mapping from errors to gRPC statuses.

pub mod auth;
pub mod cli;
pub mod config;
pub mod distributed;
pub mod doctor;
pub mod error;
pub mod flight;
pub mod observability;
pub mod query;
pub mod sample;
pub mod server;

pub use config::{ServeArgs, ServeConfig};
pub use error::{Error, Result};
pub use server::Server;
