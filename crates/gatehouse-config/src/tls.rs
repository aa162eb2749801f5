//! `[tls.data]` and `[tls.control]`: TLS on each plane's listener (rustls; TLS 1.2 and 1.3
//! only). Certificates and keys are PEM files named by path (where cert-manager or a mounted
//! Secret puts them), re-read when they change. A plane without a section speaks plain HTTP:
//! fine on loopback or behind a TLS-terminating proxy. Static: the paths live as long as the
//! process; their contents do not.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Issue;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub data: Option<RawListenerTls>,
    pub control: Option<RawListenerTls>,
    /// How often the files are looked at for a change.
    pub reload_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: Option<String>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<String>,
    /// With it, every client must present a certificate that chains to one of these CAs (PEM).
    pub client_ca_file: Option<String>,
}

/// One listener's TLS files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub data: Option<ListenerTls>,
    pub control: Option<ListenerTls>,
    pub reload_interval: Duration,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings { data: None, control: None, reload_interval: Duration::from_secs(10) }
    }
}

pub(crate) fn settings(raw: RawTls, issues: &mut Vec<Issue>) -> TlsSettings {
    let mut bad = |path: String, rule: &str| issues.push(Issue { path, rule: rule.to_owned() });
    let mut listener = |name: &str, raw: Option<RawListenerTls>| {
        let raw = raw?;
        let mut file = |field: &str, v: Option<String>, required: bool| match v {
            Some(p) if p.is_empty() || p.len() > 4096 || p.contains('\0') => {
                bad(format!("tls.{name}.{field}"), "must be a file path (1-4096 bytes)");
                None
            }
            Some(p) => Some(PathBuf::from(p)),
            None => {
                if required {
                    bad(format!("tls.{name}.{field}"), "is required when [tls.{name}] is configured");
                }
                None
            }
        };
        let cert = file("cert_file", raw.cert_file, true);
        let key = file("key_file", raw.key_file, true);
        let client_ca_file = file("client_ca_file", raw.client_ca_file, false);
        Some(ListenerTls { cert_file: cert?, key_file: key?, client_ca_file })
    };
    let data = listener("data", raw.data);
    let control = listener("control", raw.control);
    let ms = raw.reload_interval_ms.unwrap_or(10_000);
    if !(100..=3_600_000).contains(&ms) {
        bad("tls.reload_interval_ms".to_owned(), "must be between 100 and 3600000");
    }
    TlsSettings { data, control, reload_interval: Duration::from_millis(ms) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (TlsSettings, Vec<Issue>) {
        #[derive(Deserialize)]
        struct W {
            tls: RawTls,
        }
        let w: W = toml::from_str(text).unwrap();
        let mut issues = Vec::new();
        (settings(w.tls, &mut issues), issues)
    }

    #[test]
    fn each_plane_names_its_files() {
        let (s, issues) = parse(
            "[tls]\nreload_interval_ms = 500\n[tls.data]\ncert_file = \"d.crt\"\nkey_file = \"d.key\"\n\
             [tls.control]\ncert_file = \"c.crt\"\nkey_file = \"c.key\"\nclient_ca_file = \"ca.pem\"\n",
        );
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(s.data.unwrap().client_ca_file, None);
        assert_eq!(s.control.unwrap().client_ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(s.reload_interval, Duration::from_millis(500));
    }

    #[test]
    fn a_plane_without_its_key_or_with_a_bad_interval_is_refused() {
        let (s, issues) = parse("[tls]\nreload_interval_ms = 5\n[tls.data]\ncert_file = \"d.crt\"\n");
        assert!(s.data.is_none());
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["tls.data.key_file", "tls.reload_interval_ms"]);
        let (_, issues) = parse("[tls.control]\ncert_file = \"\"\nkey_file = \"k\"\n");
        assert_eq!(issues[0].path, "tls.control.cert_file");
    }
}
