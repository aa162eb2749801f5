//! Certificates made in the test (rcgen): a private CA, and server or client certificates it
//! issues, valid for a chosen window around now. Nothing here is trusted by anything but the
//! test that made it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// A private certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate (PEM): what a peer must trust.
    pub pem: String,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// When an issued certificate is valid, relative to now.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From an hour ago for a day.
    Current,
    /// Ended an hour ago.
    Expired,
    /// Starts in a day.
    NotYet,
}

impl Ca {
    #[expect(clippy::unwrap_used, reason = "test setup")]
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str], validity: Validity) -> Issued {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        self.issue(names, None, ExtendedKeyUsagePurpose::ServerAuth, validity)
    }

    /// A client certificate whose common name is `who`.
    pub fn client(&self, who: &str) -> Issued {
        self.issue(Vec::new(), Some(who), ExtendedKeyUsagePurpose::ClientAuth, Validity::Current)
    }

    #[expect(clippy::unwrap_used, reason = "test setup")]
    fn issue(
        &self,
        names: Vec<String>,
        cn: Option<&str>,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        if let Some(cn) = cn {
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        params.extended_key_usages = vec![usage];
        let now = time::OffsetDateTime::now_utc();
        let (hour, day) = (Duration::from_secs(3600), Duration::from_secs(86_400));
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - hour, now + day),
            Validity::Expired => (now - day, now - hour),
            Validity::NotYet => (now + day, now + 2 * day),
        };
        Issued { cert_pem: params.signed_by(&key, &self.issuer).unwrap().pem(), key_pem: key.serialize_pem() }
    }
}

impl Issued {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir`.
    #[expect(clippy::unwrap_used, reason = "test setup")]
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// The certificate and key as one PEM (what an HTTP client presents as its identity).
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// What a [`TlsProxy`] speaks before its TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// TLS from the first byte (Redis's `rediss://`).
    Direct,
    /// PostgreSQL's: the client asks with an `SSLRequest`, the proxy answers `S`, then TLS.
    Postgres,
}

/// A TLS-terminating proxy in front of a real plain-TCP server (PostgreSQL, Redis), so a test
/// can put that server behind a certificate of its own making.
pub struct TlsProxy {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl TlsProxy {
    /// Listens on 127.0.0.1:0 with `cert`, forwarding each connection's plaintext to `upstream`.
    #[expect(clippy::unwrap_used, reason = "test setup")]
    pub async fn spawn(cert: &Issued, front: Front, upstream: std::net::SocketAddr) -> TlsProxy {
        use rustls::pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if front == Front::Postgres {
                        let mut first = [0u8; 8];
                        if tcp.read_exact(&mut first).await.is_err() || first != PG_SSL_REQUEST {
                            return; // this server speaks TLS only
                        }
                        if tcp.write_all(b"S").await.is_err() {
                            return;
                        }
                    }
                    let Ok(mut client) = acceptor.accept(tcp).await else { return };
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        TlsProxy { addr, task }
    }
}
