//! End-to-end tests: the real `gatehouse` binary on ephemeral ports, real HTTP, a real fake
//! upstream. Each test gets its own data dir.

mod auth;
mod bad_input;
mod common;
mod config;
mod lifecycle;
mod postgres;
mod quickstart;
mod upstream;
