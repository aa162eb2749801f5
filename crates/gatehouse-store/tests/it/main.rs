//! The same store suite, run against SQLite and PostgreSQL.

mod harness;
mod keys;
mod tenants;
