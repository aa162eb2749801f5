//! What the admin API stores for an org, a project or a key: its rate and its budgets. Pure
//! data with its validation; the limits gate compiles these into checks.

use serde::{Deserialize, Serialize};

/// The limits of one scope (org, project or key).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Requests per minute for the whole scope (every key and token in it together). For a key
    /// it replaces the project's per-key default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute (prompt + output), estimated before the call and corrected after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once (streams count until they end). Keys only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Rates for one model within the scope (canonical model name -> rates).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub models: std::collections::BTreeMap<String, ModelRates>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetSpec>,
}

/// The rates of one model within a scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// The UTC day.
    Daily,
    /// The UTC calendar month.
    Monthly,
    Lifetime,
}

impl Period {
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
            Period::Lifetime => "lifetime",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Micro-USD internally; USD in the API.
    Usd,
    Tokens,
}

impl Unit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Usd => "usd",
            Unit::Tokens => "tokens",
        }
    }
}

/// One budget: a hard stop per period in USD or tokens, with soft thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub period: Period,
    /// USD, up to six decimal places.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Percentages of the limit (1-99) at which a `budget.threshold` event is emitted, once
    /// per period, before the hard stop at 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_at: Vec<u8>,
}

/// A validated budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledBudget {
    pub period: Period,
    pub unit: Unit,
    /// In the unit's integer form (micro-USD or tokens).
    pub limit: u64,
    /// Ascending, unique, 1-99.
    pub alert_at: Vec<u8>,
}

/// Why a spec was refused: the field (for the refusal's `param`) and the rule (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub field: &'static str,
    pub rule: &'static str,
}

pub const MAX_RPM: u32 = 1_000_000;
pub const MAX_TPM: u64 = 1_000_000_000;
pub const MAX_CONCURRENCY: u32 = 100_000;
pub const MAX_MODELS: usize = 64;
pub const MAX_BUDGETS: usize = 8;
const MAX_USD: f64 = 1_000_000_000.0;
const MAX_TOKENS: u64 = 1_000_000_000_000_000;
const MAX_ALERTS: usize = 4;

impl LimitSpec {
    pub fn compile(&self) -> Result<Vec<CompiledBudget>, SpecError> {
        let bad = |field, rule| SpecError { field, rule };
        if self.rpm.is_some_and(|r| !(1..=MAX_RPM).contains(&r)) {
            return Err(bad("rpm", "must be between 1 and 1000000"));
        }
        if self.tpm.is_some_and(|t| !(1..=MAX_TPM).contains(&t)) {
            return Err(bad("tpm", "must be between 1 and 1000000000"));
        }
        if self.concurrency.is_some_and(|c| !(1..=MAX_CONCURRENCY).contains(&c)) {
            return Err(bad("concurrency", "must be between 1 and 100000"));
        }
        if self.models.len() > MAX_MODELS {
            return Err(bad("models", "at most 64 models per scope"));
        }
        for (name, m) in &self.models {
            let valid_name = !name.is_empty() && name.len() <= 128;
            let valid_rpm = m.rpm.is_none_or(|r| (1..=MAX_RPM).contains(&r));
            let valid_tpm = m.tpm.is_none_or(|t| (1..=MAX_TPM).contains(&t));
            if !valid_name || !valid_rpm || !valid_tpm || (m.rpm.is_none() && m.tpm.is_none()) {
                return Err(bad("models", "each model names rpm and/or tpm within their bounds"));
            }
        }
        if self.budgets.len() > MAX_BUDGETS {
            return Err(bad("budgets", "at most 8 budgets per scope"));
        }
        let mut out: Vec<CompiledBudget> = Vec::with_capacity(self.budgets.len());
        for b in &self.budgets {
            let (unit, limit) = match (b.usd, b.tokens) {
                (Some(usd), None) => {
                    if !usd.is_finite() || usd <= 0.0 || usd > MAX_USD {
                        return Err(bad("budgets", "usd must be above 0 and at most 1000000000"));
                    }
                    let micro = usd * 1_000_000.0;
                    // tolerate only the float's own representation error (12.1 is 12.0999...)
                    if (micro - micro.round()).abs() > (micro * 1e-12).max(1e-3) {
                        return Err(bad("budgets", "usd has at most six decimal places"));
                    }
                    #[expect(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "checked: finite, 0 < micro <= 1e15"
                    )]
                    (Unit::Usd, micro.round() as u64)
                }
                (None, Some(t)) if (1..=MAX_TOKENS).contains(&t) => (Unit::Tokens, t),
                (None, Some(_)) => return Err(bad("budgets", "tokens must be between 1 and 10^15")),
                _ => return Err(bad("budgets", "each budget has exactly one of usd and tokens")),
            };
            if b.alert_at.len() > MAX_ALERTS
                || b.alert_at.iter().any(|p| !(1..=99).contains(p))
                || b.alert_at.windows(2).any(|w| w[0] >= w[1])
            {
                return Err(bad("budgets", "alert_at holds up to 4 ascending percentages between 1 and 99"));
            }
            if out.iter().any(|o| o.period == b.period && o.unit == unit) {
                return Err(bad("budgets", "one budget per period and unit"));
            }
            out.push(CompiledBudget { period: b.period, unit, limit, alert_at: b.alert_at.clone() });
        }
        Ok(out)
    }
}

/// The soft thresholds crossed when spend went from `before` to `after` of `limit`.
pub fn crossed(alert_at: &[u8], limit: u64, before: u64, after: u64) -> impl Iterator<Item = u8> + '_ {
    let at = move |p: u8| u128::from(limit) * u128::from(p);
    alert_at.iter().copied().filter(move |&p| u128::from(before) * 100 < at(p) && u128::from(after) * 100 >= at(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Vec<CompiledBudget>, SpecError> {
        serde_json::from_str::<LimitSpec>(json).map_err(|_| SpecError { field: "json", rule: "" })?.compile()
    }

    #[test]
    fn budgets_compile_to_integer_limits() {
        let b = spec(r#"{"rpm":60,"budgets":[{"period":"monthly","usd":12.5,"alert_at":[50,80]},{"period":"daily","tokens":1000}]}"#)
            .unwrap();
        assert_eq!(
            b[0],
            CompiledBudget { period: Period::Monthly, unit: Unit::Usd, limit: 12_500_000, alert_at: vec![50, 80] }
        );
        assert_eq!(b[1].limit, 1000);
        assert_eq!(spec(r#"{"budgets":[{"period":"lifetime","usd":0.000001}]}"#).unwrap()[0].limit, 1);
    }

    #[test]
    fn bad_specs_name_their_field() {
        for (json, field) in [
            (r#"{"rpm":0}"#, "rpm"),
            (r#"{"tpm":0}"#, "tpm"),
            (r#"{"concurrency":0}"#, "concurrency"),
            (r#"{"models":{"gpt-4o":{}}}"#, "models"),
            (r#"{"models":{"gpt-4o":{"rpm":0}}}"#, "models"),
            (r#"{"budgets":[{"period":"daily"}]}"#, "budgets"),
            (r#"{"budgets":[{"period":"daily","usd":1,"tokens":1}]}"#, "budgets"),
            (r#"{"budgets":[{"period":"daily","usd":-1}]}"#, "budgets"),
            (r#"{"budgets":[{"period":"daily","usd":1.0000001}]}"#, "budgets"),
            (r#"{"budgets":[{"period":"daily","tokens":0}]}"#, "budgets"),
            (r#"{"budgets":[{"period":"daily","usd":1,"alert_at":[80,50]}]}"#, "budgets"),
            (r#"{"budgets":[{"period":"daily","usd":1,"alert_at":[100]}]}"#, "budgets"),
            (r#"{"budgets":[{"period":"daily","usd":1},{"period":"daily","usd":2}]}"#, "budgets"),
        ] {
            assert_eq!(spec(json).unwrap_err().field, field, "{json}");
        }
        assert!(serde_json::from_str::<LimitSpec>(r#"{"rpn":5}"#).is_err(), "unknown fields are refused");
        assert!(serde_json::from_str::<LimitSpec>(r#"{"budgets":[{"period":"weekly","usd":1}]}"#).is_err());
    }

    #[test]
    fn thresholds_fire_once_when_crossed() {
        let alerts = [50, 80];
        assert_eq!(crossed(&alerts, 100, 0, 49).collect::<Vec<_>>(), Vec::<u8>::new());
        assert_eq!(crossed(&alerts, 100, 49, 50).collect::<Vec<_>>(), [50]);
        assert_eq!(crossed(&alerts, 100, 40, 90).collect::<Vec<_>>(), [50, 80]);
        assert_eq!(crossed(&alerts, 100, 50, 79).collect::<Vec<_>>(), Vec::<u8>::new());
    }
}
