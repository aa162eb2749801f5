//! The audit log against real stores (SQLite and PostgreSQL): the writer, every kind of
//! tampering, exports, the spool and fail-closed, several writers, retention.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code: a failed setup must fail the test loudly")]

mod support;
mod tamper;
mod write_path;
