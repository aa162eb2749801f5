//! The HTTP edge both planes share, so neither is built on top of the other: the transport
//! layers (panic catching, sensitive headers, request ids, spans), the hardened
//! HTTP/1 accept loop (header-read timeout, connection bound, drain), body pacing (deadline
//! and minimum rate), the one bounded body reader, the one reading of a request's credential, and the health answers. Generic
//! transport only: no policy, no plane's state.

mod credential;
mod health;
mod host;
mod pace;
mod serve;
mod tls;
mod transport;

pub use credential::{Accept, MAX_CREDENTIAL_BYTES, presented};
pub use health::{healthz, ready};
pub use host::{AllowedHosts, BadHost, require_allowed_host};
pub use pace::{BodyPace, BodyTooSlow, RATE_GRACE, paced};
pub use serve::{ServeOptions, serve};
pub use tls::{MAX_PEM_BYTES, TlsError, TlsFiles, TlsListener, read_pem_file};
pub use transport::{Plane, REQUEST_ID, control_plane_cors, read_body, with_hsts, with_transport_layers};
