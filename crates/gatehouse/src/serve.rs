//! `gatehouse serve`: load config, open the store, bootstrap on first start, build the
//! runtime snapshot, bind both planes, serve until a signal, drain.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gatehouse_admin::AdminState;
use gatehouse_audit::webhooks::{DeliveryConfig, Webhooks};
use gatehouse_audit::{Actor, Auditor, Event, EventKind, FailurePolicy, Outcome, WriterConfig};
use gatehouse_config::{AuditFailure, Config, DataPlaneAudit, LogFormat, SecretRef, ServerConfig, StoreUrl};
use gatehouse_egress::AddressPolicy;
use gatehouse_gates::authenticate::{Credentials, KeyVerifier};
use gatehouse_gates::breaker_sync::BreakerSync;
use gatehouse_gates::control::ControlHandle;
use gatehouse_gates::federated::FederatedVerifier;
use gatehouse_gates::guardrails::Policies;
use gatehouse_gates::ledger::Ledger;
use gatehouse_gates::limits::{LimitPolicies, LimitsBackend};
use gatehouse_gates::meter::{AuditHook, LATENCY_BUCKETS};
use gatehouse_gates::tenant_routes::RoutingRules;
use gatehouse_http::{Plane, with_transport_layers};
use gatehouse_limits::{Limits, RedisConfig, RedisLimits};
use gatehouse_oidc::Federation;
use gatehouse_proxy::exchange::Exchange;
use gatehouse_proxy::{AppState, Services, build_runtime};
use gatehouse_security::{KeyHasher, KeyKind, MasterKeySource, generate_key};
use gatehouse_store::{NewKey, Store, Tenant, now_ms};
use gatehouse_tokens::Capabilities;
use metrics_exporter_prometheus::PrometheusBuilder;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{LogFormatArg, ServeArgs};

/// The environment variable that, when set, points the gateway at PostgreSQL.
const DATABASE_URL_ENV: &str = "GATEHOUSE_DATABASE_URL";
const MASTER_KEY_ENV: &str = "GATEHOUSE_MASTER_KEY";
/// How often every replica asks the store for revocations.
const REVOCATION_POLL: Duration = Duration::from_millis(250);
/// How often each replica writes when keys were last used (behind the requests, one batch).
const LAST_USED_FLUSH: Duration = Duration::from_secs(5);
/// How soon a guardrail policy changed through another replica applies here.
const GUARDRAIL_POLL: Duration = Duration::from_secs(1);
/// How often each replica re-reads the limit and routing policies: half a second, so a change
/// made through another replica applies everywhere within a second even with the read itself.
const LIMITS_POLL: Duration = Duration::from_millis(500);
/// How often each replica publishes its circuit breakers' changes and adopts the others'
/// (with Redis): a change reaches every replica within about two of these.
const BREAKER_SYNC: Duration = Duration::from_millis(250);
/// Verified keys kept in memory at most.
const KEY_CACHE_CAPACITY: usize = 100_000;

pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn apply_overrides(server: &mut ServerConfig, args: &ServeArgs) -> anyhow::Result<()> {
    if let Some(a) = &args.data_listen {
        server.data_listen = a.parse().with_context(|| "--data-listen must be an address like 127.0.0.1:8080")?;
    }
    if let Some(a) = &args.admin_listen {
        server.admin_listen = a.parse().with_context(|| "--admin-listen must be an address like 127.0.0.1:8081")?;
    }
    if let Some(d) = &args.data_dir {
        server.data_dir = d.clone();
    }
    if let Some(f) = args.log_format {
        server.log_format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    if matches!(server.store, StoreUrl::Embedded) && std::env::var_os(DATABASE_URL_ENV).is_some() {
        server.store = StoreUrl::Url(SecretRef::Env(DATABASE_URL_ENV.to_owned()));
    }
    // Checked after the overrides: the store can come from the environment.
    if server.replicas.get() > 1 && matches!(server.store, StoreUrl::Embedded) {
        bail!(
            "server.replicas = {} needs PostgreSQL (GATEHOUSE_DATABASE_URL or server.database_url): replicas on their own SQLite files would not share keys, revocations or limits",
            server.replicas
        );
    }
    Ok(())
}

const LOG_QUEUE_LINES: usize = 32_768;

/// Logs go to stderr (stdout carries only the start-up banner) through a writer thread, so a
/// slow log sink never blocks a runtime worker. Not lossy: when the queue is full, callers
/// wait rather than drop audit lines. The guard flushes at exit. The queue is allocated whole
/// at start (32 bytes a line): the library's default of 128 000 lines kept 4 MiB resident in
/// an idle gateway; 32 768 lines still absorb a second of per-request lines at 30 000 requests
/// a second.
fn init_tracing(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("gatehouse-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    guard
}

#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

pub async fn open_store(server: &ServerConfig) -> anyhow::Result<Store> {
    let store = match &server.store {
        StoreUrl::Embedded => {
            let path = server.data_dir.join("gatehouse.db");
            Store::open_sqlite(&path).await.with_context(|| format!("cannot open SQLite at {}", path.display()))?
        }
        StoreUrl::Url(r) => {
            let url = r.resolve(&env).map_err(anyhow::Error::msg)?;
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("database url must be a postgres:// URL");
            }
            // the URL may hold a password: errors say only that the connection failed
            Store::connect_postgres(url, None).await.context("cannot connect to PostgreSQL")?
        }
    };
    store.migrate().await.context("cannot apply store migrations")?;
    Ok(store)
}

/// What the first start of an empty store did.
enum Bootstrap {
    /// Secrets minted here, printed once.
    Generated { admin_token: SecretString, api_key: SecretString },
    /// The operator's `server.bootstrap_admin_token` became the first admin token; nothing to show.
    Given,
}

/// The bootstrap admin token's id, the same on every replica: replicas starting together on
/// an empty store race to insert it, and exactly one wins (the others see a conflict).
const BOOTSTRAP_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000000";

/// `server.bootstrap_admin_token`, resolved and checked at every start, so a bad reference
/// fails on the first deploy rather than the day the store is empty. Never echoes the value.
fn given_bootstrap_token(server: &ServerConfig) -> anyhow::Result<Option<SecretString>> {
    let Some(reference) = &server.bootstrap_admin_token else { return Ok(None) };
    let token = reference.resolve(&env).map_err(anyhow::Error::msg).context("server.bootstrap_admin_token")?;
    if gatehouse_security::check_format(token.expose_secret()) != Some(KeyKind::Admin) {
        bail!("server.bootstrap_admin_token is not an admin token (`gatehouse bootstrap-token` prints a fresh one)");
    }
    Ok(Some(token))
}

async fn bootstrap(
    store: &Store,
    hasher: &KeyHasher,
    tenant: Tenant,
    given: Option<SecretString>,
) -> anyhow::Result<Option<Bootstrap>> {
    if store.admin_token_count().await? > 0 {
        return Ok(None);
    }
    // admin tokens exist, all revoked: that is no first start, and no token is minted behind
    // the operator's back (an active one here: another replica bootstrapped a moment ago)
    if let Some(newest) = store.list_admin_tokens(None, None, 1).await?.first() {
        if newest.revoked_at.is_some() {
            tracing::warn!("every admin token is revoked; `gatehouse recover-admin` mints one beside the store");
        }
        return Ok(None);
    }
    let provided = given.is_some();
    let admin_token = given.unwrap_or_else(|| generate_key(KeyKind::Admin));
    let digest = hasher.digest(KeyKind::Admin, &admin_token).0;
    match store.insert_admin_token(BOOTSTRAP_TOKEN_ID, "bootstrap", &digest, "platform_admin", None, None).await {
        Ok(()) => {}
        // another replica bootstrapped this store a moment ago: its token stands, ours is dropped
        Err(gatehouse_store::Error::Conflict) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if provided {
        // no quickstart key: nobody would ever see it
        tracing::info!(target: "gatehouse::audit", action = "system.bootstrap", "bootstrap admin token taken from server.bootstrap_admin_token");
        return Ok(Some(Bootstrap::Given));
    }
    let api_key = generate_key(KeyKind::Api);
    store
        .insert_key(&NewKey {
            id: gatehouse_core::KeyId::generate(),
            org: tenant.org,
            project: tenant.project,
            name: "quickstart".to_owned(),
            digest: hasher.digest(KeyKind::Api, &api_key).0,
            hint: KeyHasher::hint(KeyKind::Api, &api_key),
            allowed_models: None,
            created_at: now_ms(),
            expires_at: None,
            user: None,
        })
        .await?;
    tracing::info!(target: "gatehouse::audit", action = "system.bootstrap", "bootstrap admin token and quickstart key created");
    Ok(Some(Bootstrap::Generated { admin_token, api_key }))
}

/// The planes' addresses as URLs, `https` where the plane has TLS.
struct Urls {
    data: String,
    admin: String,
}

fn banner(urls: &Urls, boot: Option<&Bootstrap>) {
    let mut out = std::io::stdout().lock();
    let (data, admin) = (&urls.data, &urls.admin);
    let _ = writeln!(out, "gatehouse: data plane    {data}");
    let _ = writeln!(out, "gatehouse: control plane {admin}");
    if let Some(Bootstrap::Given) = boot {
        let _ =
            writeln!(out, "\nFirst start: the platform admin token is the one server.bootstrap_admin_token names.\n");
    }
    if let Some(Bootstrap::Generated { admin_token, api_key }) = boot {
        let key = api_key.expose_secret();
        let _ = writeln!(
            out,
            "\nFirst start. These secrets are shown once and stored only as keyed hashes:\n\
             \n  admin token:  {admin_token}\n  api key:      {key}\n\
             \nTry it:\n\
             \n  curl {data}/v1/chat/completions \\\n    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"mock\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'\n\
             \n  python -c 'from openai import OpenAI; c = OpenAI(base_url=\"{data}/v1\", api_key=\"{key}\"); print(c.chat.completions.create(model=\"mock\", messages=[{{\"role\":\"user\",\"content\":\"hello\"}}]).choices[0].message.content)'\n\
             \nManage keys:  GATEHOUSE_ADMIN_TOKEN={admin_token} gatehouse keys list\n",
            admin_token = admin_token.expose_secret(),
        );
    }
    let _ = writeln!(out, "gatehouse: ready");
    let _ = out.flush();
}

async fn shutdown_signal(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                let _ = tx.send(true);
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; draining in-flight requests");
    let _ = tx.send(true);
}

fn writer_config(server: &ServerConfig) -> WriterConfig {
    let a = &server.audit;
    let mut c = WriterConfig::new(server.data_dir.join("audit-spool.jsonl"));
    c.queue = a.queue_capacity.get() as usize;
    c.linger = a.batch_linger;
    c.checkpoint_every = u64::from(a.checkpoint_every_events.get());
    c.checkpoint_interval = a.checkpoint_interval;
    c.failure = match a.on_store_failure {
        AuditFailure::Spool => FailurePolicy::Spool,
        AuditFailure::FailClosed => FailurePolicy::FailClosed,
    };
    c.spool_max_bytes = a.spool_max_bytes;
    c.file = a.file.clone();
    c.retention = a.retention;
    c
}

async fn system_event(auditor: &Auditor, kind: EventKind) {
    let e = Event::new(kind, Outcome::Allowed, 200, "ok", Actor::System);
    if auditor.record(e).await.is_err() {
        tracing::error!(action = kind.as_str(), "audit event not recorded");
    }
}

/// The config `serve` would run with (file, then flags and environment).
pub fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => Config::default(),
    };
    apply_overrides(&mut config.server, args)?;
    Ok(config)
}

/// The master key's configured source (config reference, else the environment), if any.
pub fn provided_master_key(server: &ServerConfig) -> anyhow::Result<Option<SecretString>> {
    Ok(match &server.master_key {
        Some(r) => Some(r.resolve(&env).map_err(anyhow::Error::msg)?),
        None => env(MASTER_KEY_ENV).map(SecretString::from),
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let server = config.server.clone();
    let _log_guard = init_tracing(server.log_format);

    create_private_dir(&server.data_dir)
        .with_context(|| format!("cannot create data dir {}", server.data_dir.display()))?;
    let keys = crate::keyring::MasterKeys::load(&server, true)?;
    let given_admin_token = given_bootstrap_token(&server)?;
    if keys.source == MasterKeySource::GeneratedFile {
        tracing::warn!(
            path = %server.data_dir.join("master.key").display(),
            "GENERATED A MASTER KEY FILE. Every stored secret depends on it: back it up, or set \
             GATEHOUSE_MASTER_KEY from a secret store in production"
        );
    }
    if keys.previous.is_some() {
        tracing::warn!(
            "a master-key rotation is under way: stored secrets open under the current or the previous master key \
             until the rotation completes and the previous key is retired"
        );
    }
    let store = open_store(&server).await?;
    let keyring = crate::keyring::Keyring::open(&store, &keys).await?;
    drop(keys);
    let crate::keyring::Keyring {
        hasher,
        checkpoint: checkpoint_signer,
        webhooks: webhook_sealer,
        envelope,
        tokens: token_sealer,
        ..
    } = keyring;
    let hasher = Arc::new(hasher);
    let vault = Arc::new(gatehouse_gates::credentials::Vault::new(store.clone(), envelope));
    let tenant = store.ensure_default_tenant().await?;
    let metrics = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;

    let webhooks = Webhooks::new(
        store.clone(),
        webhook_sealer,
        AddressPolicy { allow: server.webhooks.allow_private_targets.clone() },
        DeliveryConfig {
            max_attempts: server.webhooks.max_attempts.get(),
            retry_base: server.webhooks.retry_base,
            timeout: server.webhooks.timeout,
        },
    )
    .context("cannot build the webhook client")?;
    webhooks.refresh().await.context("cannot load webhooks")?;
    let mut wcfg = writer_config(&server);
    wcfg.outbox = Some(webhooks.clone());
    let auditor = gatehouse_audit::start(store.clone(), checkpoint_signer, wcfg)
        .await
        .context("cannot start the audit writer")?;
    let spans = match &server.telemetry.otlp_endpoint {
        Some(url) => Some(crate::otel::OtlpSpans::start(url, &server.telemetry)?),
        None => None,
    };
    let hook = AuditHook {
        auditor: Some(auditor.clone()),
        allowed_too: server.audit.data_plane == DataPlaneAudit::All,
        spans: spans.clone().map(|s| s as Arc<dyn gatehouse_gates::meter::SpanSink>),
        propagate: server.telemetry.propagate_trace_context,
        meters: Arc::default(),
    };
    system_event(&auditor, EventKind::SystemStart).await;

    let verifier = Arc::new(
        KeyVerifier::new(store.clone(), hasher.clone(), KEY_CACHE_CAPACITY)
            .with_stale_if_error(server.key_stale_if_error),
    );
    let tokens = Arc::new(Capabilities::new(store.clone(), token_sealer, KEY_CACHE_CAPACITY));
    let federation = Arc::new(
        Federation::new(&server.oidc)
            .map_err(|e| anyhow::anyhow!("oidc: {e}"))?
            .with_client_secrets(console_client_secrets(&server)?)
            .with_oauth(oauth_providers(&server)?)
            .map_err(|e| anyhow::anyhow!("oauth: {e}"))?,
    );
    federation.spawn_refresh();
    let federated =
        (!federation.is_empty()).then(|| Arc::new(FederatedVerifier::new(federation.clone(), store.clone())));
    let creds = Credentials { keys: verifier.clone(), tokens: Some(tokens.clone()), federated: federated.clone() };
    let guardrails = Arc::new(
        Policies::new(&config.policy.guardrails.spec, config.policy.guardrails.scan_timeout)
            .map_err(|e| anyhow::anyhow!("guardrails: {e}"))?,
    );
    guardrails.load(&store).await.context("guardrail policies")?;
    let limits = Arc::new(limits_backend(&server, &store, &auditor).await?);
    let credentials = Arc::new(gatehouse_gates::credentials::CredentialTable::default());
    credentials.load(&vault).await.context("provider credentials")?;
    let routing = Arc::new(RoutingRules::new(credentials.clone()));
    routing.load(&store).await.context("routing policies")?;
    // projects' browser origins, for CORS preflights on the data plane
    let cors = Arc::new(gatehouse_proxy::cors::CorsOrigins::default());
    cors.reload(&store).await.context("projects' CORS origins")?;
    tokio::spawn(cors.clone().run_reloader(store.clone()));
    let services = Services {
        creds: creds.clone(),
        guardrails: guardrails.clone(),
        limits: limits.clone(),
        routing: routing.clone(),
        credentials: credentials.clone(),
        cache: Arc::new(gatehouse_gates::cache::ResponseCache::shared(
            limits.limits.clone(),
            vault.clone(),
            server.cache,
        )),
        audit: hook,
        cors: cors.clone(),
    };
    let runtime = build_runtime(&config.policy, &services, &env)?;
    // the MCP gateway: registered servers (opened) and tool policies, kept fresh like the others
    let mcp_control = Arc::new(gatehouse_gates::control::McpControl {
        egress: AddressPolicy { allow: server.mcp.allow_private_targets.clone() },
        settings: server.mcp.clone(),
        ..Default::default()
    });
    mcp_control.servers.load(&vault, &store).await.context("MCP servers")?;
    mcp_control.policies.load(&store).await.context("MCP policies")?;
    let mcp = gatehouse_mcp::McpState::new(gatehouse_mcp::Parts {
        authenticate: gatehouse_gates::authenticate::AuthenticateGate { creds: creds.clone() },
        audit: services.audit.clone(),
        servers: mcp_control.servers.clone(),
        policies: mcp_control.policies.clone(),
        guardrails: guardrails.clone(),
        limits: limits.clone(),
        settings: server.mcp.clone(),
    })
    .context("cannot build the MCP client")?;
    let exchange = match &federated {
        Some(f) if !server.exchange.is_empty() => {
            Some(Arc::new(Exchange::new(server.exchange.clone(), f.clone(), tokens.clone())))
        }
        _ => None,
    };
    let app = AppState::new(runtime, services, store.clone(), exchange);

    let data_listener = TcpListener::bind(server.data_listen)
        .await
        .with_context(|| format!("cannot bind data plane {}", server.data_listen))?;
    let admin_listener = TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("cannot bind control plane {}", server.admin_listen))?;
    let data_addr = data_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let (data_tls, admin_tls) = listener_tls(&server.tls).await?;
    if !admin_addr.ip().is_loopback() && admin_tls.is_none() {
        tracing::warn!(addr = %admin_addr, "control plane is bound to a non-loopback address without TLS; configure [tls.control], or put it behind a TLS-terminating proxy or firewall it");
    }
    for tls in [&data_tls, &admin_tls].into_iter().flatten() {
        tokio::spawn(tls.clone().run_reloader(server.tls.reload_interval));
    }

    let boot = bootstrap(&store, &hasher, tenant, given_admin_token).await?;

    tokio::spawn(verifier.clone().run_revocation_poller(REVOCATION_POLL));
    tokio::spawn(tokens.clone().run_revocation_poller(REVOCATION_POLL));
    tokio::spawn(verifier.clone().run_last_used_flusher(LAST_USED_FLUSH));
    tokio::spawn(guardrails.clone().run_poller(store.clone(), GUARDRAIL_POLL));
    tokio::spawn(limits.policies.clone().run_poller(store.clone(), LIMITS_POLL));
    tokio::spawn(routing.clone().run_poller(store.clone(), LIMITS_POLL));
    tokio::spawn(gatehouse_proxy::health::run(app.runtime.clone()));
    tokio::spawn(credentials.clone().run_poller(vault.clone(), LIMITS_POLL));
    tokio::spawn(mcp_control.servers.clone().run_poller(vault.clone(), store.clone(), LIMITS_POLL));
    tokio::spawn(mcp_control.policies.clone().run_poller(store.clone(), LIMITS_POLL));
    tokio::spawn(gatehouse_mcp::run_sweeper(mcp.clone()));
    if limits.limits.shared() {
        // circuit breakers agree across replicas through the shared store
        let live = app.runtime.clone();
        let sync =
            BreakerSync::default().run(move || live.load().gates.table.clone(), limits.limits.clone(), BREAKER_SYNC);
        tokio::spawn(sync);
    }
    tokio::spawn(prune_ledger(app.clone()));
    tokio::spawn(webhooks.clone().run_refresh());
    tokio::spawn(webhooks.clone().run_delivery());
    {
        let h = metrics.clone();
        tokio::spawn(async move {
            // histograms keep every sample until upkeep folds them into buckets (~8 bytes each,
            // two per request): at 25 000 requests a second, ~0.4 MiB a second
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                h.run_upkeep();
            }
        });
    }
    if let Some(w) = args.config.clone().and_then(crate::reload::Watch::new) {
        tokio::spawn(crate::reload::watch(w, app.clone()));
    }

    let max_conn = server.max_connections.get() as usize;
    let pace = gatehouse_http::BodyPace {
        deadline: server.body_read_timeout,
        min_bytes_per_second: server.body_min_bytes_per_second,
    };
    let allowed_hosts = gatehouse_http::AllowedHosts::new(admin_addr, &server.admin_allowed_hosts)
        .context("server.admin_allowed_hosts")?;
    let data_router = with_transport_layers(
        gatehouse_proxy::router(app.clone()).merge(gatehouse_mcp::router(mcp)),
        Plane::Data,
        pace,
    );
    let data_router = if data_tls.is_some() { gatehouse_http::with_hsts(data_router) } else { data_router };
    // the control plane's narrow handle on the data plane: the served models are read from
    // whichever snapshot is live, the shared services are the ones every snapshot uses
    let live = app.runtime.clone();
    let control = ControlHandle::new(
        store.clone(),
        Arc::new(move || live.load().gates.table.clone()),
        guardrails.clone(),
        limits.clone(),
        routing,
        verifier.clone(),
        vault,
    )
    .with_mcp(mcp_control);
    let admin_state = AdminState {
        verifications: Arc::default(),
        store: store.clone(),
        control,
        tokens,
        federation: server.oidc.iter().any(|i| i.control_plane).then(|| federation.clone()),
        hasher,
        metrics: Some(metrics),
        limits: Arc::new(gatehouse_admin::ratelimit::AdminLimits::new(
            server.admin_mutations_per_minute.get(),
            server.admin_requests_per_minute_per_source.get(),
        )),
        audit: auditor.clone(),
        webhooks,
        allowed_hosts: Arc::new(allowed_hosts),
    };
    if let Some(every) = server.audit.verify_interval {
        tokio::spawn(gatehouse_admin::trail::run_verifier(admin_state.clone(), every));
    }
    let console = server.console.enabled.then(|| {
        tokio::spawn(prune_sessions(store.clone()));
        let signs_in = federation.console_issuers().next().is_some() || federation.oauth_providers().next().is_some();
        let console_idp = signs_in.then(|| federation.clone());
        gatehouse_console::router(admin_state.clone(), server.console.clone(), console_idp)
    });
    let admin = gatehouse_admin::router(admin_state, console);
    // outside the Host check: a preflight is answered from the allow-list alone
    let admin = match gatehouse_http::control_plane_cors(&server.admin_cors_origins) {
        Some(cors) => admin.layer(cors),
        None => admin,
    };
    let admin_router = with_transport_layers(admin, Plane::Control, pace);
    let admin_router = if admin_tls.is_some() { gatehouse_http::with_hsts(admin_router) } else { admin_router };

    let (tx, rx) = watch::channel(false);
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    tokio::spawn(shutdown_signal(tx));
    tracing::info!(data = %data_addr, admin = %admin_addr, store = ?store.backend(), "gatehouse started");
    let url = |tls: bool, addr: SocketAddr| format!("{}://{addr}", if tls { "https" } else { "http" });
    let urls = Urls { data: url(data_tls.is_some(), data_addr), admin: url(admin_tls.is_some(), admin_addr) };
    banner(&urls, boot.as_ref());

    let options = |max_connections, tls| gatehouse_http::ServeOptions {
        header_read_timeout: server.header_read_timeout,
        max_connections,
        grace: server.shutdown_grace,
        tls,
    };
    let data = gatehouse_http::serve(data_listener, data_router, options(max_conn, data_tls), stop(rx.clone()));
    let admin = gatehouse_http::serve(admin_listener, admin_router, options(1024, admin_tls), stop(rx));
    tokio::join!(data, admin);
    // every request has finished: settle and write what is queued (bounded: a limits store that
    // is down would hold settlements back for up to an hour), record the stop, write what is
    // queued, sign the tails
    if let Some(ledger) = &limits.ledger
        && tokio::time::timeout(server.shutdown_grace, ledger.flush()).await.is_err()
    {
        tracing::error!("shutdown: some settlements were still pending (limits store unavailable?)");
    }
    if let Err(e) = verifier.flush_last_used().await {
        tracing::warn!(error = %e, "shutdown: cannot record when keys were last used");
    }
    system_event(&auditor, EventKind::SystemStop).await;
    auditor.shutdown().await;
    if let Some(s) = spans {
        s.shutdown().await;
    }
    store.close().await;
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// In-process limits, or Redis when `[redis]` is configured (then it must answer at start; once
/// connected, the connection manager reconnects by itself); the stored limit policies; the
/// settlement task.
async fn limits_backend(server: &ServerConfig, store: &Store, auditor: &Auditor) -> anyhow::Result<LimitsBackend> {
    let (limits, rates_fail_open) = match &server.redis {
        None => (Limits::Local(gatehouse_limits::Local::new()), true),
        Some(r) => {
            let url = r.url.resolve(&env).map_err(|e| anyhow::anyhow!("redis.url: {e}"))?;
            let cfg = redis_config(r, url.expose_secret()).await?;
            let limits = RedisLimits::connect(cfg).await.map_err(|e| anyhow::anyhow!("limits store: {e}"))?;
            (Limits::Redis(Box::new(limits)), r.rates_fail_open)
        }
    };
    let limits = Arc::new(limits);
    let restored = gatehouse_gates::ledger::restore_spend(store, &limits).await.context("budget spend")?;
    if restored > 0 {
        tracing::info!(budgets = restored, "budget spend restored from the store");
    }
    let policies = Arc::new(LimitPolicies::default());
    policies.load(store).await.context("limit policies")?;
    let ledger = Ledger::start(store.clone(), limits.clone(), Some(auditor.clone()));
    Ok(LimitsBackend { limits, rates_fail_open, policies, ledger: Some(ledger) })
}

/// The client secrets of the issuers people sign in to the console with, by issuer name.
fn console_client_secrets(server: &ServerConfig) -> anyhow::Result<gatehouse_oidc::ClientSecrets> {
    let mut out = gatehouse_oidc::ClientSecrets::default();
    for i in &server.oidc {
        if let Some(r) = i.console.as_ref().and_then(|c| c.client_secret.as_deref()) {
            let r = SecretRef::parse(r).map_err(anyhow::Error::msg)?;
            let secret = r.resolve(&env).map_err(|e| anyhow::anyhow!("oidc {}: client_secret: {e}", i.name))?;
            out.insert(i.name.clone(), secret);
        }
    }
    Ok(out)
}

/// The `[[oauth]]` providers with their client secrets resolved.
fn oauth_providers(
    server: &ServerConfig,
) -> anyhow::Result<Vec<(gatehouse_oidc::settings::OAuthProvider, Option<secrecy::SecretString>)>> {
    let mut out = Vec::new();
    for p in &server.oauth {
        let secret = match p.client_secret.as_deref() {
            Some(r) => {
                let r = SecretRef::parse(r).map_err(anyhow::Error::msg)?;
                Some(r.resolve(&env).map_err(|e| anyhow::anyhow!("oauth {}: client_secret: {e}", p.name))?)
            }
            None => None,
        };
        out.push((p.clone(), secret));
    }
    Ok(out)
}

/// Deletes console sessions that have ended (expired or revoked), hourly.
async fn prune_sessions(store: Store) {
    let mut t = tokio::time::interval(Duration::from_secs(3600));
    loop {
        t.tick().await;
        let now = gatehouse_store::now_ms();
        // a sign-in at an identity provider has ten minutes to come back
        match store.prune_console_sessions(now, now - 10 * 60_000).await {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "ended console sessions pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "console session prune failed; will retry"),
        }
    }
}

/// Deletes usage ledger rows past the retention (`[budgets] ledger_retention_days`), hourly.
async fn prune_ledger(app: AppState) {
    let mut t = tokio::time::interval(Duration::from_secs(3600));
    loop {
        t.tick().await;
        let keep = app.runtime.load().gates.limits.budgets.ledger_retention;
        let before = gatehouse_store::now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        match app.store.prune_usage(before).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "usage ledger pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "usage ledger prune failed; will retry"),
        }
    }
}

/// One plane's TLS from `[tls.<plane>]`, its files read and checked now.
pub(crate) async fn plane_tls(
    plane: &'static str,
    l: Option<&gatehouse_config::tls::ListenerTls>,
) -> Result<PlaneTls, gatehouse_http::TlsError> {
    let Some(l) = l else { return Ok(None) };
    let files = gatehouse_http::TlsFiles {
        cert: l.cert_file.clone(),
        key: l.key_file.clone(),
        client_ca: l.client_ca_file.clone(),
        // the data plane's clients are programs: HTTP/2 lets one connection carry many
        // requests; the control plane stays HTTP/1.1
        http2: plane == "data",
    };
    gatehouse_http::TlsListener::load(plane, files).await.map(Some)
}

/// Each plane's TLS from `[tls]`: a plane configured for TLS never starts in plain HTTP.
type PlaneTls = Option<Arc<gatehouse_http::TlsListener>>;
pub(crate) async fn listener_tls(tls: &gatehouse_config::tls::TlsSettings) -> anyhow::Result<(PlaneTls, PlaneTls)> {
    let data = plane_tls("data", tls.data.as_ref()).await.context("tls.data")?;
    let control = plane_tls("control", tls.control.as_ref()).await.context("tls.control")?;
    Ok((data, control))
}

/// The limits store's connection settings from `[redis]` and its resolved URL (the CA bundle
/// read here, bounded like the listeners' PEM files).
pub(crate) async fn redis_config(r: &gatehouse_config::redis::RedisSettings, url: &str) -> anyhow::Result<RedisConfig> {
    let ca_pem = match &r.ca_file {
        Some(p) => Some(gatehouse_http::read_pem_file(p).await.context("redis.ca_file")?),
        None => None,
    };
    Ok(RedisConfig { url: url.to_owned(), prefix: r.key_prefix.clone(), timeout: r.timeout, ca_pem })
}
