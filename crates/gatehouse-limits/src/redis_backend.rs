//! The Redis backend: every decision is one Lua script, atomic on the server and timed by the
//! server's own clock (`TIME`), so replicas with skewed clocks agree. A request's admission
//! (all its rates and reservations) is one script call, and the settlement task settles many
//! requests per call, so a request costs Redis about one round trip. Keys live under a
//! per-deployment prefix; every call has a timeout; the connection manager reconnects by
//! itself, so a Redis restart needs no gateway restart.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation};

use crate::{
    Adjust, Admitted, Ask, Budget, Rate, RateDecision, Reservation, Reserved, Settle, Standing, Unavailable,
    reservation_id,
};

#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Every key starts `<prefix>:`; deployments sharing a Redis must differ.
    pub prefix: String,
    /// Per call, including a reconnect.
    pub timeout: Duration,
    /// With a `rediss://` URL: the CA certificates (PEM) the server's certificate must chain
    /// to, instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

pub struct RedisLimits {
    con: ConnectionManager,
    prefix: String,
    timeout: Duration,
    admit: Script,
    settle: Script,
    standing: Script,
}

/// A budget's keys: its spend; its live holds (a sorted set, member `<id>:<amount>`, score =
/// expiry in ms of server time); holds that expired unsettled (`lapsed`, score = when they were
/// swept: each kept an hour, so a late settle still finds its receipt and counts the spend);
/// `held`, the running sum of the live holds' amounts; and `tended`, until when (server ms) the
/// live set and the sum are known to be kept. The sum makes a reservation O(1) in the number of
/// requests in flight (summing the set was ~1 µs of Redis time per hold per budget per
/// request: the largest cost at concurrency 16); `tended` is read with the sums, so keeping
/// the keys alive costs no call per request. Settlements use the first four.
const BUDGET_KEYS: [&str; 5] = ["spent", "live", "lapsed", "held", "tended"];
const SETTLE_KEYS: usize = 4;

/// A request's admission: every rate and every reservation in one script, one round trip.
/// KEYS = one TAT per rate, then per ask each budget's five keys ([`BUDGET_KEYS`], in order).
/// ARGV = number of rates, number of asks, hold ms; per rate: interval µs, tolerance µs, cost;
/// per ask: reservation id, amount, number of budgets, each budget's limit.
///
/// Rates: GCRA, each deciding on its own, the same arithmetic as `crate::gcra`. Asks: each all
/// or nothing over its budgets: `spent + held + amount <= limit`. Every call made inside a
/// script costs the server about as much as a small command, so the common path makes as few
/// as it can: reads are one `MGET` for all TATs and one for every budget's spend, sum and
/// `tended`; a grant is a `ZADD` and an `INCRBY` per budget. Expired holds only ever make the
/// sum larger, so they are swept (moved to `lapsed`, out of the sum) when a budget looks short,
/// before it is refused, and otherwise once a minute per budget, when the keys' expiry is
/// pushed out; the answer is the same as sweeping on every call. Returns, flat: per rate
/// {allowed, remaining, reset µs, retry µs}; per ask {1, 0} granted or {0, i} exhausted at its
/// budget i (1-based).
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local nrates, nasks, hold = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local grace = 3600000
local keep = hold + grace
local out = {}
local a = 4
if nrates > 0 then
  local tats = redis.call('MGET', unpack(KEYS, 1, nrates))
  for i = 1, nrates do
    local interval, tolerance, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    a = a + 3
    local tat = tonumber(tats[i] or now_us)
    if tat < now_us then tat = now_us end
    local new_tat = tat + interval * cost
    if new_tat - now_us > tolerance then
      local remaining = math.floor(math.max(tolerance - (tat - now_us), 0) / interval)
      table.insert(out, 0); table.insert(out, remaining); table.insert(out, tat - now_us)
      table.insert(out, new_tat - now_us - tolerance)
    else
      redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now_us) / 1000) + 1)
      table.insert(out, 1); table.insert(out, math.floor((tolerance - (new_tat - now_us)) / interval))
      table.insert(out, new_tat - now_us); table.insert(out, 0)
    end
  end
end
-- every budget's spend, sum and tended in one read; `num` follows them as this script changes them
local reads = {}
for i = nrates + 1, #KEYS, 5 do
  table.insert(reads, KEYS[i]); table.insert(reads, KEYS[i + 3]); table.insert(reads, KEYS[i + 4])
end
local num = {}
if #reads > 0 then
  local got = redis.call('MGET', unpack(reads))
  for i = 1, #reads do num[reads[i]] = tonumber(got[i] or 0) end
end
local swept = {}
-- the budget at KEYS[b + 1..5]: its expired holds to `lapsed` and out of the sum, once per call
local function sweep(b)
  local live, held = KEYS[b + 2], KEYS[b + 4]
  if swept[live] then return end
  swept[live] = true
  local expired = redis.call('ZRANGEBYSCORE', live, '-inf', now)
  if #expired > 0 then
    local gone = 0
    for _, m in ipairs(expired) do
      gone = gone + tonumber(string.match(m, ':(%d+)$'))
      redis.call('ZADD', KEYS[b + 3], now, m)
    end
    redis.call('PEXPIRE', KEYS[b + 3], grace + 60000)
    redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
    num[held] = redis.call('DECRBY', held, gone)
  end
end
local function fits(b, amount, limit)
  return num[KEYS[b + 1]] + math.max(num[KEYS[b + 4]], 0) + amount <= limit
end
local k = nrates
for _ = 1, nasks do
  local member = ARGV[a] .. ':' .. ARGV[a + 1]
  local amount, n = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local limits = a + 3
  a = limits + n
  local short = 0
  for i = 1, n do
    local b = k + 5 * (i - 1)
    local limit = tonumber(ARGV[limits + i - 1])
    if not fits(b, amount, limit) then
      sweep(b)
      if not fits(b, amount, limit) then
        short = i
        break
      end
    end
  end
  if short == 0 then
    for i = 1, n do
      local b = k + 5 * (i - 1)
      local live, held, tended = KEYS[b + 2], KEYS[b + 4], KEYS[b + 5]
      redis.call('ZADD', live, now + hold, member)
      num[held] = redis.call('INCRBY', held, amount)
      -- this hold and its hour of grace must end before the keys do
      if num[tended] < now + keep then
        sweep(b)
        local until_ms = now + keep + 60000
        redis.call('PEXPIRE', live, keep + 60000)
        redis.call('PEXPIRE', held, keep + 60000)
        redis.call('SET', tended, until_ms, 'PX', keep + 60000)
        num[tended] = until_ms
      elseif num[held] <= amount then
        -- no other hold: Redis deleted the emptied set, and this grant made it anew
        redis.call('PEXPIRE', live, num[tended] - now)
      end
    end
    table.insert(out, 1); table.insert(out, 0)
  else
    table.insert(out, 0); table.insert(out, short)
  end
  k = k + 5 * n
end
return out
"#;

/// Many requests' ends: settlements, then token-rate corrections, in one script.
/// KEYS = per settlement each budget's first four keys ([`BUDGET_KEYS`]), then one TAT per
/// correction. ARGV = number of settlements, number of corrections; per settlement:
/// reservation id, amount, actual, number of budgets, each budget's retain ms (0 = forever);
/// per correction: interval µs, delta (signed; the arithmetic of `crate::gcra_adjust`).
///
/// A settlement's hold on its first budget is its receipt: live or lapsed means not yet
/// settled (a lapsed one's amount already left the sum; the spend still counts); absent means
/// settled before, and nothing changes. The receipts are taken one by one; the sums and
/// spends change once per budget for the whole batch (one `DECRBY` and one `INCRBY` however
/// many requests ended on it), and each settlement is answered with the spend as it stood after
/// it, in order. A spend key gets its retention when this batch creates it; lapsed receipts
/// older than the grace hour are dropped. Returns, flat, per settlement: {0, 0...} already
/// settled, or {1, each budget's spend after}; one number per budget either way.
const SETTLE: &str = r#"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nsettles, nadjusts = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
local a, k = 3, 0
-- per key, in first-seen order: lapsed sets touched, sums to lower, spends to raise
local lapsed, lapsed_seen = {}, {}
local held, lower = {}, {}
local spent, raise, retain = {}, {}, {}
local function add(list, totals, key, amount)
  if totals[key] == nil then
    totals[key] = 0
    table.insert(list, key)
  end
  totals[key] = totals[key] + amount
end
-- takes the member's hold off one budget: true if it was there (live or lapsed)
local function release(b, member, amount)
  if not lapsed_seen[KEYS[b + 3]] then
    lapsed_seen[KEYS[b + 3]] = true
    table.insert(lapsed, KEYS[b + 3])
  end
  if redis.call('ZREM', KEYS[b + 2], member) == 1 then
    add(held, lower, KEYS[b + 4], amount)
    return true
  end
  return redis.call('ZREM', KEYS[b + 3], member) == 1
end
local done = {}
for s = 1, nsettles do
  local amount, actual, n = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local member = ARGV[a] .. ':' .. ARGV[a + 1]
  local keeps = a + 4
  a = keeps + n
  if release(k, member, amount) then
    for i = 1, n do
      local b = k + 4 * (i - 1)
      if i > 1 then release(b, member, amount) end
      if retain[KEYS[b + 1]] == nil then retain[KEYS[b + 1]] = tonumber(ARGV[keeps + i - 1]) end
      add(spent, raise, KEYS[b + 1], actual)
    end
    done[s] = {k, n, actual}
  else
    done[s] = {false, n}
  end
  k = k + 4 * n
end
for _, key in ipairs(held) do
  redis.call('DECRBY', key, lower[key])
end
-- each spend as it stood before this batch, then walked forward settlement by settlement
local running = {}
for _, key in ipairs(spent) do
  local after = redis.call('INCRBY', key, raise[key])
  running[key] = after - raise[key]
  if retain[key] > 0 and running[key] == 0 then
    redis.call('PEXPIRE', key, retain[key])
  end
end
for s = 1, nsettles do
  local d = done[s]
  if d[1] then
    table.insert(out, 1)
    for i = 1, d[2] do
      local key = KEYS[d[1] + 4 * (i - 1) + 1]
      running[key] = running[key] + d[3]
      table.insert(out, running[key])
    end
  else
    table.insert(out, 0)
    for _ = 1, d[2] do table.insert(out, 0) end
  end
end
local grace_ago = math.floor(now_us / 1000) - 3600000
for _, key in ipairs(lapsed) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', grace_ago)
end
for j = 1, nadjusts do
  local stored = redis.call('GET', KEYS[k + j])
  if stored then
    local tat = math.max(tonumber(stored), now_us)
    tat = math.max(tat + tonumber(ARGV[a]) * tonumber(ARGV[a + 1]), now_us)
    redis.call('SET', KEYS[k + j], string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000) + 1)
  end
  a = a + 2
end
return out
"#;

/// Settlements per script call: one call holds Redis for its duration (every command of
/// every settlement), so a large backlog goes in chunks rather than one long script.
const SETTLE_CHUNK: usize = 128;

/// KEYS = spent, live. Returns {spent, reserved}: the live holds summed one by one (not the
/// running sum), so it also checks the scripts above.
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
        let client = match cfg.ca_pem.clone() {
            Some(root) => redis::Client::build_with_tls(
                cfg.url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(root) },
            ),
            None => redis::Client::open(cfg.url.as_str()),
        }
        .map_err(|e| crate::Error::Url(e.kind()))?;
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
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            standing: Script::new(STANDING),
        })
    }

    /// Whether Redis keeps its data across its own restart (an append-only file, or RDB
    /// snapshots): without either, a restart hands every budget its money back. `None`: the
    /// server does not allow `CONFIG GET` (managed services often do not).
    pub async fn persists(&self) -> Result<Option<bool>, crate::Error> {
        let ask = |param: &'static str| {
            let mut con = self.con.clone();
            async move { redis::cmd("CONFIG").arg("GET").arg(param).query_async::<Vec<String>>(&mut con).await }
        };
        let answers = tokio::time::timeout(self.timeout, async { (ask("appendonly").await, ask("save").await) })
            .await
            .map_err(|_| crate::Error::Timeout)?;
        Ok(match answers {
            (Ok(aof), Ok(save)) => {
                let value = |v: &[String]| v.get(1).cloned().unwrap_or_default();
                Some(value(&aof) == "yes" || !value(&save).trim().is_empty())
            }
            _ => None,
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    /// A budget's first `n` keys ([`BUDGET_KEYS`]): all five to admit, four to settle.
    fn budget_keys(&self, inv: &mut ScriptInvocation<'_>, budget: &str, n: usize) {
        for kind in &BUDGET_KEYS[..n] {
            inv.key(self.key(kind, budget));
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: ScriptInvocation<'_>) -> Result<T, Unavailable> {
        let mut con = self.con.clone();
        self.bounded(inv.invoke_async(&mut con)).await
    }

    /// One call, within the timeout; a failure is logged and is `Unavailable`.
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.timeout, call).await {
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
        let mut all = self.rates(&[(key, rate, cost)]).await?;
        all.pop().ok_or(Unavailable)
    }

    pub async fn rates(&self, checks: &[(&str, Rate, u64)]) -> Result<Vec<RateDecision>, Unavailable> {
        Ok(self.admit(checks, &[], Duration::ZERO).await?.rates)
    }

    pub async fn reserve(&self, budgets: &[Budget], amount: u64, hold: Duration) -> Result<Reserved, Unavailable> {
        let mut all = self.admit(&[], &[Ask { budgets, amount }], hold).await?;
        all.reserved.pop().ok_or(Unavailable)
    }

    pub async fn admit(
        &self,
        rates: &[(&str, Rate, u64)],
        asks: &[Ask<'_>],
        hold: Duration,
    ) -> Result<Admitted, Unavailable> {
        let ids: Vec<String> = asks.iter().map(|_| reservation_id()).collect();
        let mut inv = self.admit.prepare_invoke();
        inv.arg(rates.len()).arg(asks.len()).arg(ms(hold));
        for (key, rate, cost) in rates {
            inv.key(self.key("rate", key));
            inv.arg(rate.interval_us()).arg(rate.tolerance_us()).arg((*cost).max(1));
        }
        for (ask, id) in asks.iter().zip(&ids) {
            inv.arg(id).arg(ask.amount).arg(ask.budgets.len());
            for b in ask.budgets {
                self.budget_keys(&mut inv, &b.key, BUDGET_KEYS.len());
                inv.arg(b.limit);
            }
        }
        let flat: Vec<u64> = self.run(inv).await?;
        let (rated, reserved) = flat.split_at_checked(4 * rates.len()).ok_or(Unavailable)?;
        if reserved.len() != 2 * asks.len() {
            return Err(Unavailable);
        }
        Ok(Admitted {
            rates: rated
                .chunks_exact(4)
                .map(|c| RateDecision {
                    allowed: c[0] == 1,
                    remaining: c[1],
                    reset: Duration::from_micros(c[2]),
                    retry_after: Duration::from_micros(c[3]),
                })
                .collect(),
            reserved: reserved
                .chunks_exact(2)
                .zip(asks.iter().zip(ids))
                .map(|(c, (ask, id))| match c[0] {
                    1 => Reserved::Granted(Reservation { id, amount: ask.amount, budgets: ask.budgets.to_vec() }),
                    _ => Reserved::Exhausted { budget: usize::try_from(c[1]).unwrap_or(1).saturating_sub(1) },
                })
                .collect(),
        })
    }

    pub async fn adjust(&self, key: &str, rate: Rate, delta: i64) -> Result<(), Unavailable> {
        self.settle_batch(&[], &[(key, rate, delta)]).await.map(drop)
    }

    pub async fn settle(&self, r: &Reservation, actual: u64) -> Result<Option<Vec<u64>>, Unavailable> {
        let mut all = self.settle_batch(&[(r, actual)], &[]).await?;
        all.pop().ok_or(Unavailable)
    }

    pub async fn settle_batch(
        &self,
        settles: &[Settle<'_>],
        adjusts: &[Adjust<'_>],
    ) -> Result<Vec<Option<Vec<u64>>>, Unavailable> {
        // a reservation without budgets holds nothing: nothing to settle, nothing to send
        let mut out: Vec<Option<Vec<u64>>> = vec![None; settles.len()];
        let sent: Vec<usize> = (0..settles.len()).filter(|&i| !settles[i].0.budgets.is_empty()).collect();
        let mut chunks: Vec<&[usize]> = sent.chunks(SETTLE_CHUNK).collect();
        if chunks.is_empty() && !adjusts.is_empty() {
            chunks.push(&[]);
        }
        for (n, chunk) in chunks.into_iter().enumerate() {
            // the corrections ride with the first call
            let adjusting = if n == 0 { adjusts } else { &[] };
            let mut inv = self.settle.prepare_invoke();
            inv.arg(chunk.len()).arg(adjusting.len());
            for &i in chunk {
                let (r, actual) = settles[i];
                inv.arg(&r.id).arg(r.amount).arg(actual).arg(r.budgets.len());
                for b in &r.budgets {
                    self.budget_keys(&mut inv, &b.key, SETTLE_KEYS);
                    inv.arg(b.retain.map_or(0, ms));
                }
            }
            for (key, rate, delta) in adjusting {
                inv.key(self.key("rate", key));
                inv.arg(rate.interval_us()).arg(*delta);
            }
            let flat: Vec<u64> = self.run(inv).await?;
            let mut rest = flat.as_slice();
            for &i in chunk {
                let n = settles[i].0.budgets.len();
                let (this, more) = rest.split_at_checked(n + 1).ok_or(Unavailable)?;
                out[i] = (this[0] == 1).then(|| this[1..].to_vec());
                rest = more;
            }
        }
        Ok(out)
    }

    /// Circuit breakers shared by the replicas: `<prefix>:breaker:<deployment>` holds when the
    /// deployment's open period ends (unix ms); absent, it is closed. One MGET for all.
    pub async fn breakers(&self, deployments: &[String]) -> Result<Vec<u64>, Unavailable> {
        if deployments.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = deployments.iter().map(|d| self.key("breaker", d)).collect();
        let mut con = self.con.clone();
        let got: Vec<Option<u64>> = self.bounded(redis::cmd("MGET").arg(&keys).query_async(&mut con)).await?;
        Ok(got.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Publishes one deployment's breaker: open until `open_until` (kept `keep` past it, so a
    /// half-open state is shared too), or closed (0).
    pub async fn set_breaker(&self, deployment: &str, open_until: u64, keep: Duration) -> Result<(), Unavailable> {
        let key = self.key("breaker", deployment);
        let mut con = self.con.clone();
        if open_until == 0 {
            return self.bounded(redis::cmd("DEL").arg(&key).query_async::<()>(&mut con)).await;
        }
        let cmd = redis::cmd("SET").arg(&key).arg(open_until).arg("PX").arg(ms(keep)).to_owned();
        self.bounded(cmd.query_async::<()>(&mut con)).await
    }

    /// A response cache entry (sealed by the caller), if one is kept under `key`.
    pub async fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let mut con = self.con.clone();
        self.bounded(redis::cmd("GET").arg(self.key("cache", key)).query_async(&mut con)).await
    }

    /// Keeps a response cache entry (sealed by the caller) for `ttl`.
    pub async fn cache_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Unavailable> {
        let mut con = self.con.clone();
        let cmd = redis::cmd("SET").arg(self.key("cache", key)).arg(value).arg("PX").arg(ms(ttl)).to_owned();
        self.bounded(cmd.query_async::<()>(&mut con)).await
    }

    pub async fn standing(&self, key: &str) -> Result<Standing, Unavailable> {
        let mut inv = self.standing.key(self.key("spent", key));
        inv.key(self.key("live", key));
        let (spent, reserved): (u64, u64) = self.run(inv).await?;
        Ok(Standing { spent, reserved })
    }
}
