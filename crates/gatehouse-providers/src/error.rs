use gatehouse_core::{DenyCode, HasDenyCode};

/// Why a caller's request or a provider's response could not be understood. Carries no
/// content: callers render the code, logs get the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("body is not valid JSON")]
    Json,
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("field {0} is missing or has the wrong type")]
    Field(&'static str),
    #[error("JSON nesting is deeper than allowed")]
    TooDeep,
    #[error("field {0} has more items than allowed")]
    TooMany(&'static str),
    #[error("SSE event larger than allowed")]
    EventTooLarge,
    /// The request says something the model's provider cannot honour (translated between API
    /// families): refused rather than dropped.
    #[error("parameter {0} cannot be honoured by the model's provider")]
    Unsupported(&'static str),
    /// A provider's answer does not have the shape its API documents.
    #[error("the provider's answer is malformed at {0}")]
    Answer(&'static str),
}

impl Error {
    /// The refusal this error is: its code, naming the field when there is one.
    pub fn denial(&self) -> gatehouse_core::Denial {
        let d = gatehouse_core::Denial::new(self.deny_code());
        match self.param() {
            Some(p) => d.with_param(p),
            None => d,
        }
    }

    /// The request field the error is about, for the refusal's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Error::Field(f) | Error::TooMany(f) | Error::Unsupported(f) => Some(f),
            _ => None,
        }
    }
}

impl HasDenyCode for Error {
    fn deny_code(&self) -> DenyCode {
        match self {
            Error::Json => DenyCode::InvalidJson,
            Error::NotAnObject | Error::Field(_) | Error::Unsupported(_) => DenyCode::InvalidRequest,
            Error::TooDeep | Error::TooMany(_) => DenyCode::RequestTooComplex,
            Error::EventTooLarge | Error::Answer(_) => DenyCode::UpstreamError,
        }
    }
}
