//! The same store suite, run against SQLite and PostgreSQL.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test harness code: a failed setup must fail the test loudly"
)]

mod harness;
mod keys;
mod tenants;
