use gatehouse_core::{DenyCode, HasDenyCode};

/// What can fail while building the gates (a snapshot, a policy table). Refusals on the
/// request path are `Denial`s, not this.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] gatehouse_guardrails::Error),
    #[error("guardrail policy: {0}")]
    Policy(#[from] gatehouse_guardrails::SpecError),
}

impl HasDenyCode for Error {
    fn deny_code(&self) -> DenyCode {
        match self {
            Error::Engine(gatehouse_guardrails::Error::TooLarge) => DenyCode::RequestTooLarge,
            Error::Engine(gatehouse_guardrails::Error::Build(_)) => DenyCode::Internal,
            Error::Policy(_) => DenyCode::InvalidRequest,
        }
    }
}
