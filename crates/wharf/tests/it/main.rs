//! Integration tests: real servers on 127.0.0.1:0, driven over HTTP by
//! reqwest and by real container clients.
//!
//! The spec (distribution-spec v1.1.1 and its newer additions) is the oracle:
//! the tests in `pull`, `push`, `discovery` and `management` follow its
//! sections, and each assertion is something the spec's text requires.

// Tests report skipped interop checks on stderr.
#![allow(clippy::print_stderr)]

mod common;

mod access;
mod bad_input;
mod cli;
mod clients;
mod contract;
mod discovery;
mod gc_stress;
mod lifecycle;
mod management;
mod operations;
mod outages;
mod promotion;
mod pull;
mod push;
mod scale_out;
mod webhooks;
