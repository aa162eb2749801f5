//! The same store suite, run against SQLite and PostgreSQL.

#![expect(clippy::unwrap_used, reason = "test harness code: a failed setup must fail the test loudly")]

mod audit;
mod credentials;
mod keys;
mod limits;
mod tenants;
mod usage;
mod webhooks;
