//! TLS on a plane's listener: rustls, TLS 1.2 and 1.3 only, the certificate chain and key read
//! from PEM files and swapped in when the files change (new connections get the new
//! certificate; open ones keep theirs), and optionally a client CA that every client's
//! certificate must chain to (mutual TLS).
//!
//! A certificate that is expired, not yet valid, or whose key does not match is refused: at
//! start the process does not start; on a reload the last good certificate stays in service
//! and the failure is logged and counted. Errors name files, never their contents.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};

/// A PEM file larger than this is not a certificate chain or a key.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Where one listener's certificate, key and (optional) client CA live.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// Offer HTTP/2 (ALPN `h2`) besides HTTP/1.1.
    pub http2: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {kind}")]
    Read { path: String, kind: std::io::ErrorKind },
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: {what}")]
    Pem { path: String, what: &'static str },
    #[error("{path}: the certificate is not valid before {not_before} (unix seconds)")]
    NotYetValid { path: String, not_before: i64 },
    #[error("{path}: the certificate expired at {not_after} (unix seconds)")]
    Expired { path: String, not_after: i64 },
    #[error("{path}: {what}")]
    Unusable { path: String, what: String },
}

/// What one reading of the files produced.
struct Loaded {
    config: Arc<ServerConfig>,
    not_after: i64,
    /// A hash of the files' bytes, to notice a change (not a security property).
    fingerprint: u64,
}

/// One listener's TLS: the server config in service, and where it comes from.
pub struct TlsListener {
    plane: &'static str,
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
    fingerprint: AtomicU64,
    not_after: AtomicI64,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener").field("plane", &self.plane).field("files", &self.files).finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Reads and checks the files (at start, before the listener serves anything).
    pub async fn load(plane: &'static str, files: TlsFiles) -> Result<Arc<TlsListener>, TlsError> {
        let (cert, key, ca) = read_files(&files).await?;
        let loaded = build(&files, &cert, &key, ca.as_deref(), now())?;
        let l = TlsListener {
            plane,
            current: ArcSwap::new(loaded.config),
            fingerprint: AtomicU64::new(loaded.fingerprint),
            not_after: AtomicI64::new(loaded.not_after),
            files,
        };
        l.publish();
        Ok(Arc::new(l))
    }

    /// The acceptor for the next connection: the config in service now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// When the certificate in service expires (unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    pub fn plane(&self) -> &'static str {
        self.plane
    }

    /// Re-reads the files; if they changed and are good, the next connection gets them.
    /// `Ok(false)`: nothing changed.
    pub async fn reload(&self) -> Result<bool, TlsError> {
        let (cert, key, ca) = read_files(&self.files).await?;
        if fingerprint(&cert, &key, ca.as_deref()) == self.fingerprint.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let loaded = build(&self.files, &cert, &key, ca.as_deref(), now())?;
        self.current.store(loaded.config);
        self.fingerprint.store(loaded.fingerprint, Ordering::Relaxed);
        self.not_after.store(loaded.not_after, Ordering::Relaxed);
        self.publish();
        Ok(true)
    }

    /// Looks at the files every `every`, forever.
    pub async fn run_reloader(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.reload().await {
                Ok(false) => {}
                Ok(true) => {
                    metrics::counter!("gatehouse_tls_reloads_total", "plane" => self.plane, "result" => "ok")
                        .increment(1);
                    tracing::info!(plane = self.plane, not_after = self.not_after(), "TLS certificate reloaded");
                }
                Err(e) => {
                    metrics::counter!("gatehouse_tls_reloads_total", "plane" => self.plane, "result" => "failed")
                        .increment(1);
                    tracing::error!(plane = self.plane, error = %e, "TLS files changed but cannot be used; the certificate in service stays");
                }
            }
        }
    }

    fn publish(&self) {
        #[expect(clippy::cast_precision_loss, reason = "unix seconds fit a gauge's f64 exactly")]
        metrics::gauge!("gatehouse_tls_certificate_not_after_timestamp_seconds", "plane" => self.plane)
            .set(self.not_after() as f64);
    }
}

fn read_err(p: &Path, e: &std::io::Error) -> TlsError {
    TlsError::Read { path: p.display().to_string(), kind: e.kind() }
}

/// A PEM file named in the config (a certificate chain, a key, a CA bundle), refused unread
/// when it is larger than [`MAX_PEM_BYTES`].
pub async fn read_pem_file(p: &Path) -> Result<Vec<u8>, TlsError> {
    let meta = tokio::fs::metadata(p).await.map_err(|e| read_err(p, &e))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge { path: p.display().to_string() });
    }
    tokio::fs::read(p).await.map_err(|e| read_err(p, &e))
}

/// The certificate chain, the key and the client CA bundle (if any) of one listener.
async fn read_files(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>, Option<Vec<u8>>), TlsError> {
    let cert = read_pem_file(&files.cert).await?;
    let key = read_pem_file(&files.key).await?;
    let ca = match &files.client_ca {
        Some(p) => Some(read_pem_file(p).await?),
        None => None,
    };
    Ok((cert, key, ca))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn fingerprint(cert: &[u8], key: &[u8], ca: Option<&[u8]>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (cert, key, ca).hash(&mut h);
    h.finish()
}

/// Checks the files' contents and builds the server config they make.
fn build(files: &TlsFiles, cert: &[u8], key: &[u8], ca: Option<&[u8]>, now: i64) -> Result<Loaded, TlsError> {
    let cert_path = || files.cert.display().to_string();
    let key_path = || files.key.display().to_string();
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem { path: cert_path(), what: "is not valid PEM" })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem { path: cert_path(), what: "holds no CERTIFICATE" });
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|_| TlsError::Pem { path: cert_path(), what: "its first certificate is not valid X.509" })?;
    let (not_before, not_after) = (parsed.validity().not_before.timestamp(), parsed.validity().not_after.timestamp());
    if now < not_before {
        return Err(TlsError::NotYetValid { path: cert_path(), not_before });
    }
    if now > not_after {
        return Err(TlsError::Expired { path: cert_path(), not_after });
    }
    let mut keys = PrivateKeyDer::pem_slice_iter(key);
    let private = match (keys.next(), keys.next()) {
        (Some(Ok(k)), None) => k,
        (None, _) => return Err(TlsError::Pem { path: key_path(), what: "holds no private key" }),
        (Some(Err(_)), _) => return Err(TlsError::Pem { path: key_path(), what: "is not valid PEM" }),
        (Some(Ok(_)), Some(_)) => {
            return Err(TlsError::Pem { path: key_path(), what: "holds more than one private key" });
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Unusable { path: cert_path(), what: e.to_string() })?;
    let builder = match (ca, &files.client_ca) {
        (Some(ca), Some(ca_path)) => {
            let ca_path = || ca_path.display().to_string();
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|_| TlsError::Pem { path: ca_path(), what: "is not valid PEM" })?;
                roots.add(c).map_err(|_| TlsError::Pem {
                    path: ca_path(),
                    what: "holds a certificate that is not a usable CA",
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::Pem { path: ca_path(), what: "holds no CERTIFICATE" });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Unusable { path: ca_path(), what: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, private).map_err(|e| TlsError::Unusable {
        path: key_path(),
        what: format!("does not fit the certificate in {} ({e})", cert_path()),
    })?;
    config.alpn_protocols =
        if files.http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    // stateless resumption: a returning client skips the key exchange
    if let Ok(t) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        config.ticketer = t;
    }
    Ok(Loaded { config: Arc::new(config), not_after, fingerprint: fingerprint(cert, key, ca) })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        ca: rcgen::Issuer<'static, rcgen::KeyPair>,
        ca_pem: String,
    }

    fn pki() -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki { ca: rcgen::Issuer::new(params, key), ca_pem }
    }

    fn leaf(p: &Pki, days: (i64, i64)) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        (params.signed_by(&key, &p.ca).unwrap().pem(), key.serialize_pem())
    }

    fn files() -> TlsFiles {
        TlsFiles { cert: "c.pem".into(), key: "k.pem".into(), client_ca: Some("ca.pem".into()), http2: false }
    }

    #[test]
    fn a_good_pair_loads_and_bad_ones_say_why_without_their_contents() {
        let p = pki();
        let (cert, key) = leaf(&p, (-1, 30));
        let now = now();
        let ok = build(&files(), cert.as_bytes(), key.as_bytes(), Some(p.ca_pem.as_bytes()), now).unwrap();
        assert!(ok.not_after > now + 29 * 86_400);

        let (expired, old_key) = leaf(&p, (-30, -1));
        let e = build(&files(), expired.as_bytes(), old_key.as_bytes(), None, now).err().unwrap();
        assert!(matches!(e, TlsError::Expired { .. }), "{e}");
        let (early, early_key) = leaf(&p, (2, 30));
        let e = build(&files(), early.as_bytes(), early_key.as_bytes(), None, now).err().unwrap();
        assert!(matches!(e, TlsError::NotYetValid { .. }), "{e}");

        let (_, other_key) = leaf(&p, (-1, 30));
        let e = build(&files(), cert.as_bytes(), other_key.as_bytes(), None, now).err().unwrap();
        assert!(e.to_string().contains("does not fit the certificate"), "{e}");
        assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
        let e = build(&files(), b"", key.as_bytes(), None, now).err().unwrap();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let e = build(&files(), cert.as_bytes(), b"nothing", None, now).err().unwrap();
        assert!(e.to_string().contains("no private key"), "{e}");
        let two = format!("{key}{other_key}");
        let e = build(&files(), cert.as_bytes(), two.as_bytes(), None, now).err().unwrap();
        assert!(e.to_string().contains("more than one"), "{e}");
        let e = build(&files(), cert.as_bytes(), key.as_bytes(), Some(b"junk"), now).err().unwrap();
        assert!(e.to_string().starts_with("ca.pem: holds no CERTIFICATE"), "{e}");
    }
}
