//! `[prices.<model>]` and `[budgets]`: what a model's tokens cost and how budgets reserve
//! before a call. Reloadable. Budgets themselves are set per org, project and key through the
//! admin API (docs/LIMITS.md); capability tokens carry theirs as caveats.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::Issue;

/// One model's price in USD per million tokens, as on the provider's price page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    /// Prompt tokens served from the provider's cache; default: the input price.
    pub cached_input_per_mtok: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    pub default_max_tokens: Option<u64>,
    pub hold_seconds: Option<u64>,
    pub unpriced_models: Option<String>,
    pub ledger_retention_days: Option<u64>,
}

/// Micro-USD per million tokens: integer arithmetic from here on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

impl Price {
    /// What a call cost in micro-USD, rounded up (a budget never undercounts a fraction).
    /// `cached` is the part of `prompt` served from the provider's cache.
    pub fn cost(&self, prompt: u64, cached: u64, completion: u64) -> u64 {
        let cached = cached.min(prompt);
        let part = |tokens: u64, price: u64| u128::from(tokens).saturating_mul(u128::from(price));
        let pico = part(prompt - cached, self.input)
            .saturating_add(part(cached, self.cached_input))
            .saturating_add(part(completion, self.output));
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// Canonical model name -> price.
pub type Prices = HashMap<String, Price>;

/// What a request to a model without a price does while a USD budget applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpriced {
    /// Refused (403 `model_not_priced`): spend that cannot be counted is not allowed.
    Refuse,
    /// Counted at zero USD (token budgets still count it).
    Free,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetSettings {
    /// The output a request without `max_tokens`/`max_completion_tokens` reserves; a stream
    /// that runs past its reservation is cut.
    pub default_max_tokens: u64,
    /// How long an unsettled reservation holds (a replica that died mid-request).
    pub hold: Duration,
    pub unpriced: Unpriced,
    /// How long the usage ledger keeps a request.
    pub ledger_retention: Duration,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            default_max_tokens: 4096,
            hold: Duration::from_secs(900),
            unpriced: Unpriced::Refuse,
            ledger_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Largest price accepted: $100,000 per million tokens is a typo, not a model.
const MAX_PRICE_USD: f64 = 100_000.0;

fn usd_per_mtok(v: Option<f64>, path: String, issues: &mut Vec<Issue>) -> Option<u64> {
    let v = v?;
    if !v.is_finite() || !(0.0..=MAX_PRICE_USD).contains(&v) {
        issues.push(Issue { path, rule: format!("must be a price in USD between 0 and {MAX_PRICE_USD}") });
        return None;
    }
    // in micro-USD per million tokens; the float is a config literal, exact to 6 places
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "bounded above, finite, >= 0")]
    Some((v * 1_000_000.0).round() as u64)
}

pub(crate) fn prices(raw: BTreeMap<String, RawPrice>, models: &[&str], issues: &mut Vec<Issue>) -> Prices {
    let mut out = Prices::with_capacity(raw.len());
    for (model, p) in raw {
        let at = |f: &str| format!("prices.{model}.{f}");
        if !models.contains(&model.as_str()) {
            issues.push(Issue { path: format!("prices.{model}"), rule: "names no configured model".into() });
            continue;
        }
        let input = usd_per_mtok(p.input_per_mtok, at("input_per_mtok"), issues);
        let output = usd_per_mtok(p.output_per_mtok, at("output_per_mtok"), issues);
        if p.input_per_mtok.is_none() || p.output_per_mtok.is_none() {
            issues.push(Issue {
                path: format!("prices.{model}"),
                rule: "needs input_per_mtok and output_per_mtok".into(),
            });
        }
        let cached = usd_per_mtok(p.cached_input_per_mtok, at("cached_input_per_mtok"), issues);
        if let (Some(input), Some(output)) = (input, output) {
            out.insert(model, Price { input, output, cached_input: cached.unwrap_or(input) });
        }
    }
    out
}

pub(crate) fn budgets(raw: RawBudgets, issues: &mut Vec<Issue>) -> BudgetSettings {
    let d = BudgetSettings::default();
    let mut bad = |path: &str, rule: &str| issues.push(Issue { path: path.to_owned(), rule: rule.to_owned() });
    let default_max_tokens = raw.default_max_tokens.unwrap_or(d.default_max_tokens);
    if !(1..=10_000_000).contains(&default_max_tokens) {
        bad("budgets.default_max_tokens", "must be between 1 and 10000000");
    }
    let hold = raw.hold_seconds.unwrap_or(d.hold.as_secs());
    if !(10..=86_400).contains(&hold) {
        bad("budgets.hold_seconds", "must be between 10 and 86400");
    }
    let unpriced = match raw.unpriced_models.as_deref() {
        None | Some("refuse") => Unpriced::Refuse,
        Some("free") => Unpriced::Free,
        Some(_) => {
            bad("budgets.unpriced_models", "must be \"refuse\" or \"free\"");
            Unpriced::Refuse
        }
    };
    let days = raw.ledger_retention_days.unwrap_or(30);
    if !(1..=3650).contains(&days) {
        bad("budgets.ledger_retention_days", "must be between 1 and 3650");
    }
    BudgetSettings {
        default_max_tokens,
        hold: Duration::from_secs(hold),
        unpriced,
        ledger_retention: Duration::from_secs(days * 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(toml: &str) -> Vec<String> {
        match crate::Config::from_toml(toml) {
            Ok(_) => vec![],
            Err(crate::ConfigError::Invalid(v)) => v.into_iter().map(|i| i.path).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn prices_and_budget_settings_are_validated_with_paths() {
        let ok = crate::Config::from_toml("[prices.mock]\ninput_per_mtok = 2.5\noutput_per_mtok = 10\n").unwrap();
        assert_eq!(ok.policy.prices["mock"], Price { input: 2_500_000, output: 10_000_000, cached_input: 2_500_000 });
        assert_eq!(ok.policy.prices["mock-embedding"], Price::default(), "the built-in mock is free");
        assert_eq!(issues("[prices.nope]\ninput_per_mtok = 1\noutput_per_mtok = 1\n"), ["prices.nope"]);
        assert_eq!(issues("[prices.mock]\ninput_per_mtok = -1\noutput_per_mtok = 1\n"), ["prices.mock.input_per_mtok"]);
        assert_eq!(issues("[prices.mock]\ninput_per_mtok = 1\n"), ["prices.mock"]);
        assert_eq!(
            issues(
                "[budgets]\ndefault_max_tokens = 0\nhold_seconds = 1\nunpriced_models = \"maybe\"\nledger_retention_days = 0\n"
            ),
            [
                "budgets.default_max_tokens",
                "budgets.hold_seconds",
                "budgets.unpriced_models",
                "budgets.ledger_retention_days"
            ]
        );
    }

    #[test]
    fn cost_is_integer_and_rounds_up() {
        // $2.50 / $10 per Mtok, cached $1.25
        let p = Price { input: 2_500_000, output: 10_000_000, cached_input: 1_250_000 };
        assert_eq!(p.cost(1_000_000, 0, 0), 2_500_000);
        assert_eq!(p.cost(1000, 0, 100), 3_500);
        assert_eq!(p.cost(1000, 400, 0), 1_500 + 500);
        assert_eq!(p.cost(1, 0, 0), 3, "2.5 micro-USD rounds up");
        assert_eq!(p.cost(0, 5, 0), 0, "cached beyond the prompt is ignored");
        assert_eq!(Price { input: u64::MAX, output: u64::MAX, cached_input: 0 }.cost(u64::MAX, 0, u64::MAX), u64::MAX);
    }
}
