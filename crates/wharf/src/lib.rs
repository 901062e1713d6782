//! The wharf binary's library half: configuration, wiring and `serve`, and
//! the command-line client of the management API ([`cli`]).
//!
//! `main.rs` parses the command line and calls into here; integration tests
//! start real servers through [`server::start`].

pub mod cli;
pub mod config;
pub mod logging;
pub mod migrate_data;
pub mod server;
pub mod stores;
