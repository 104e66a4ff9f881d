//! End-to-end tests of the `crossdex` binary: one test binary, a module per area.
//! They run the real binary on loopback and local files only.

mod cli;
mod common;
mod compliance;
mod crash;
mod delta;
mod differential;
mod es;
mod fair;
mod http;
mod security;
mod service;
mod sim;
mod slt;
mod tui;
