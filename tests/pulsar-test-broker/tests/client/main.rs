//! End-to-end tests of the test broker driven by the real `pulsar` client (pulsar-rs) on tokio.
//! One test binary, split by concern, so the client is compiled and linked once.

mod common;

mod basic;
mod delivery;
mod robustness;
mod security;
mod subscriptions;
