//! Small answers every admin handler shares.

use gatehouse_core::{Denial, DenyCode, HasDenyCode};

pub fn bad(param: &'static str) -> Denial {
    Denial::new(DenyCode::InvalidRequest).with_param(param)
}

pub fn store_err(e: gatehouse_store::Error) -> Denial {
    tracing::warn!(error = %e, "admin store call failed");
    match e {
        gatehouse_store::Error::Conflict => Denial::new(DenyCode::InvalidRequest).with_param("name"),
        _ => Denial::new(e.deny_code()),
    }
}

/// `false` from an update means the object does not exist (in this org).
pub fn found(hit: bool) -> Result<(), Denial> {
    if hit { Ok(()) } else { Err(Denial::new(DenyCode::NotFound)) }
}
