//! The Redis backend: every decision is one Lua script, atomic on the server and timed by the
//! server's own clock (`TIME`), so replicas with skewed clocks agree. Keys live under a
//! per-deployment prefix; every call has a timeout; the connection manager reconnects by
//! itself, so a Redis restart needs no gateway restart.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation};

use crate::{Budget, Rate, RateDecision, Reservation, Reserved, Standing, Unavailable, reservation_id};

#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Every key starts `<prefix>:`; deployments sharing a Redis must differ.
    pub prefix: String,
    /// Per call, including a reconnect.
    pub timeout: Duration,
}

pub struct RedisLimits {
    con: ConnectionManager,
    prefix: String,
    timeout: Duration,
    rate: Script,
    rates: Script,
    adjust: Script,
    reserve: Script,
    settle: Script,
    standing: Script,
}

/// KEYS[1] = TAT; ARGV = interval µs, tolerance µs, cost. Returns {allowed, remaining,
/// reset µs, retry µs}: the same arithmetic as `crate::gcra`.
const RATE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
if new_tat - now > tolerance then
  local remaining = math.floor(math.max(tolerance - (tat - now), 0) / interval)
  return {0, remaining, tat - now, new_tat - now - tolerance}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, 0}
"#;

/// Several rates in one call: KEYS = one TAT per rate; ARGV = interval µs, tolerance µs, cost
/// for each. Each rate decides on its own (the same arithmetic as `RATE`); returns the four
/// numbers of each, in order.
const RATES: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local interval, tolerance, cost = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  if new_tat - now > tolerance then
    local remaining = math.floor(math.max(tolerance - (tat - now), 0) / interval)
    table.insert(out, 0); table.insert(out, remaining); table.insert(out, tat - now)
    table.insert(out, new_tat - now - tolerance)
  else
    redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
    table.insert(out, 1); table.insert(out, math.floor((tolerance - (new_tat - now)) / interval))
    table.insert(out, new_tat - now); table.insert(out, 0)
  end
end
return out
"#;

/// KEYS[1] = TAT; ARGV = interval µs, delta (signed). The arithmetic of `crate::gcra_adjust`.
const ADJUST: &str = r#"
local stored = redis.call('GET', KEYS[1])
if not stored then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = math.max(tonumber(stored), now)
local shift = tonumber(ARGV[1]) * tonumber(ARGV[2])
tat = math.max(tat + shift, now)
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 1
"#;

/// KEYS = spent_1, holds_1, spent_2, holds_2, ...; ARGV = amount, id, hold ms, limit_1, ...
/// Holds are a sorted set per budget: member `<id>:<amount>`, score = expiry (ms, server time).
/// An expired hold stops counting but is kept an hour (GRACE), so a late settle still finds it.
/// Returns {1, 0} granted or {0, i} exhausted at budget i (1-based); nothing changes then.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local amount, id, hold = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local grace = 3600000
local n = #KEYS / 2
for i = 1, n do
  local holds = KEYS[2 * i]
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now - grace)
  local reserved = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', holds, '(' .. now, '+inf')) do
    reserved = reserved + tonumber(string.match(m, ':(%d+)$'))
  end
  local spent = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  if spent + reserved + amount > tonumber(ARGV[3 + i]) then
    return {0, i}
  end
end
for i = 1, n do
  local holds = KEYS[2 * i]
  redis.call('ZADD', holds, now + hold, id .. ':' .. ARGV[1])
  if redis.call('PTTL', holds) < hold + grace then
    redis.call('PEXPIRE', holds, hold + grace)
  end
end
return {1, 0}
"#;

/// KEYS = spent_1, holds_1, ...; ARGV = member, actual, retain ms per budget (0 = forever).
/// The first budget's hold is the receipt: present means not yet settled (also when expired,
/// within the grace hour, so the spend still counts); absent means settled, and nothing changes.
/// Returns {0} when already settled, else {1, spent_1 after, spent_2 after, ...}.
const SETTLE: &str = r#"
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return {0}
end
local n = #KEYS / 2
local after = {1}
for i = 1, n do
  if i > 1 then
    redis.call('ZREM', KEYS[2 * i], ARGV[1])
  end
  after[i + 1] = redis.call('INCRBY', KEYS[2 * i - 1], ARGV[2])
  local keep = tonumber(ARGV[2 + i])
  if keep > 0 and redis.call('PTTL', KEYS[2 * i - 1]) < 0 then
    redis.call('PEXPIRE', KEYS[2 * i - 1], keep)
  end
end
return after
"#;

/// KEYS = spent, holds. Returns {spent, reserved}.
const STANDING: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reserved = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')) do
  reserved = reserved + tonumber(string.match(m, ':(%d+)$'))
end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), reserved}
"#;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisLimits {
    /// Connects (bounded by the timeout). The connection manager reconnects by itself later.
    pub async fn connect(cfg: RedisConfig) -> Result<RedisLimits, crate::Error> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| crate::Error::Url(e.kind()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1);
        let con = tokio::time::timeout(cfg.timeout, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| crate::Error::Timeout)?
            .map_err(|e| crate::Error::Connect(e.kind()))?;
        Ok(RedisLimits {
            con,
            prefix: cfg.prefix,
            timeout: cfg.timeout,
            rate: Script::new(RATE),
            rates: Script::new(RATES),
            adjust: Script::new(ADJUST),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            standing: Script::new(STANDING),
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: ScriptInvocation<'_>) -> Result<T, Unavailable> {
        let mut con = self.con.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async(&mut con)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(error = ?e.kind(), "redis limits call failed");
                Err(Unavailable)
            }
            Err(_) => {
                tracing::warn!("redis limits call timed out");
                Err(Unavailable)
            }
        }
    }

    pub async fn rate(&self, key: &str, rate: Rate, cost: u64) -> Result<RateDecision, Unavailable> {
        let mut inv = self.rate.key(self.key("rate", key));
        inv.arg(rate.interval_us()).arg(rate.tolerance_us()).arg(cost.max(1));
        let (allowed, remaining, reset, retry): (u8, u64, u64, u64) = self.run(inv).await?;
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining,
            reset: Duration::from_micros(reset),
            retry_after: Duration::from_micros(retry),
        })
    }

    pub async fn rates(&self, checks: &[(&str, Rate, u64)]) -> Result<Vec<RateDecision>, Unavailable> {
        let mut inv = self.rates.prepare_invoke();
        for (key, rate, cost) in checks {
            inv.key(self.key("rate", key));
            inv.arg(rate.interval_us()).arg(rate.tolerance_us()).arg((*cost).max(1));
        }
        let flat: Vec<u64> = self.run(inv).await?;
        Ok(flat
            .chunks_exact(4)
            .map(|c| RateDecision {
                allowed: c[0] == 1,
                remaining: c[1],
                reset: Duration::from_micros(c[2]),
                retry_after: Duration::from_micros(c[3]),
            })
            .collect())
    }

    pub async fn adjust(&self, key: &str, rate: Rate, delta: i64) -> Result<(), Unavailable> {
        let mut inv = self.adjust.key(self.key("rate", key));
        inv.arg(rate.interval_us()).arg(delta);
        let _: u8 = self.run(inv).await?;
        Ok(())
    }

    pub async fn reserve(&self, budgets: &[Budget], amount: u64, hold: Duration) -> Result<Reserved, Unavailable> {
        let id = reservation_id();
        let mut inv = self.reserve.prepare_invoke();
        for b in budgets {
            inv.key(self.key("spent", &b.key)).key(self.key("holds", &b.key));
        }
        inv.arg(amount).arg(&id).arg(ms(hold));
        for b in budgets {
            inv.arg(b.limit);
        }
        let (granted, at): (u8, usize) = self.run(inv).await?;
        if granted == 1 {
            Ok(Reserved::Granted(Reservation { id, amount, budgets: budgets.to_vec() }))
        } else {
            Ok(Reserved::Exhausted { budget: at.saturating_sub(1) })
        }
    }

    pub async fn settle(&self, r: &Reservation, actual: u64) -> Result<Option<Vec<u64>>, Unavailable> {
        let mut inv = self.settle.prepare_invoke();
        for b in &r.budgets {
            inv.key(self.key("spent", &b.key)).key(self.key("holds", &b.key));
        }
        inv.arg(format!("{}:{}", r.id, r.amount)).arg(actual);
        for b in &r.budgets {
            inv.arg(b.retain.map_or(0, ms));
        }
        let mut out: Vec<u64> = self.run(inv).await?;
        Ok((out.first() == Some(&1)).then(|| out.split_off(1)))
    }

    pub async fn standing(&self, key: &str) -> Result<Standing, Unavailable> {
        let mut inv = self.standing.key(self.key("spent", key));
        inv.key(self.key("holds", key));
        let (spent, reserved): (u64, u64) = self.run(inv).await?;
        Ok(Standing { spent, reserved })
    }
}
