//! The deployment's guardrail settings: the `[guardrails]` section of the config file as
//! written ([`Section`]) and what it means once validated ([`Settings`]). The config crate
//! reads the file and reports problems by path; what a guardrail setting means stays here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::policy::{CustomRule, PolicySpec, Rule, SpecError, StreamRelease, default_spec};

/// `[guardrails]`: the deployment's default policy, layered over the built-in default
/// (docs/GUARDRAILS.md); orgs and projects layer theirs on top through the admin API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    #[serde(default)]
    pub detectors: BTreeMap<String, Rule>,
    pub injection_threshold: Option<f32>,
    pub restore_placeholders: Option<bool>,
    pub stream_release: Option<StreamRelease>,
    #[serde(default)]
    pub custom: Vec<CustomRule>,
    pub scan_timeout_ms: Option<u64>,
}

/// The deployment's default guardrail policy (it compiles) and the scan deadline.
#[derive(Clone, Debug)]
pub struct Settings {
    pub spec: PolicySpec,
    /// Deadline for scanning a large text off the request task; past it, the request is
    /// refused (fail closed).
    pub scan_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { spec: default_spec(), scan_timeout: Duration::from_secs(1) }
    }
}

impl Settings {
    /// The section layered over the built-in default. Returns the settings (with a bad value
    /// replaced by its default) and every rule the section breaks, by field under
    /// `[guardrails]`; a message never quotes a pattern or value.
    pub fn from_section(s: Section) -> (Settings, Vec<SpecError>) {
        let over = PolicySpec {
            detectors: s.detectors,
            injection_threshold: s.injection_threshold,
            restore_placeholders: s.restore_placeholders,
            stream_release: s.stream_release,
            custom: s.custom,
        };
        let spec = default_spec().layered(&over);
        let mut errors = Vec::new();
        if let Err(e) = spec.compile() {
            errors.push(e);
        }
        let ms = s.scan_timeout_ms.unwrap_or(1000);
        if !(1..=60_000).contains(&ms) {
            errors.push(SpecError { field: "scan_timeout_ms".into(), message: "must be between 1 and 60000".into() });
        }
        (Settings { spec, scan_timeout: Duration::from_millis(ms.clamp(1, 60_000)) }, errors)
    }
}
