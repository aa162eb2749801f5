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
