//! Wiring: builds the pipeline from a validated config and runs the server.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, ConfigError, PolicySource};
use crate::decide::{Decider, GrantLimits, Recording};
use crate::grant::status::GrantChecker;
use crate::grant::{GrantError, GrantSigner};
use crate::identity::replay::ReplayGuard;
use crate::identity::retrieval::Retriever;
use crate::identity::{Authenticator, IdentityError};
use crate::lifecycle::{self, KeyInUse, PolicyRecorder};
use crate::log::checkpoint::{LogSigner, NoteVerifier};
use crate::log::entry::{KeyPurpose, PolicyTrigger};
use crate::log::Record;
use crate::log::{
    CheckpointPolicy, LogError, LogStore, LogWriter, Observer, WriterOptions, WriterThread,
};
use crate::policy::{PolicyError, PolicyOrigin, PolicyStore};
use crate::retention::Retainer;
use crate::revocation::Revoker;
use crate::server::callers::Callers;
use crate::server::metrics::Metrics;
use crate::server::{router, AppState};
use crate::sinks::{DurableLog, SinkError};
use crate::tool_call::ToolCallChecker;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot set up the document fetcher: {0}")]
    Fetch(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("{0}")]
    Request(String),
}

/// The console's settings, its pinned log verifier key checked; `None`
/// when it is disabled.
fn console_settings(
    config: &Config,
    log_verifier: &NoteVerifier,
) -> Result<Option<crate::server::console::ConsoleSettings>, AppError> {
    if !config.console.enabled {
        return Ok(None);
    }
    let log_verifier = match &config.console.log_verifier {
        Some(vkey) => {
            NoteVerifier::from_vkey(vkey)
                .map_err(|e| ConfigError::Invalid(format!("console.log_verifier: {e}")))?;
            vkey.clone()
        }
        None => log_verifier.vkey(),
    };
    Ok(Some(crate::server::console::ConsoleSettings::new(
        log_verifier,
    )))
}

fn limits(config: &Config) -> GrantLimits {
    GrantLimits {
        default_ttl_seconds: config.grants.default_ttl_seconds,
        max_ttl_seconds: config.grants.max_ttl_seconds,
    }
}

pub fn signing_key_path(config: &Config) -> PathBuf {
    config
        .grants
        .signing_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("grant-signing-key.pem"))
}

/// The log's checkpoint key: separate from the grant key.
pub fn log_signer(config: &Config) -> Result<LogSigner, AppError> {
    let path = log_key_path(config);
    LogSigner::load_or_create(&path, &config.log.origin)
        .map_err(|message| AppError::Log(LogError::Open { path, message }))
}

fn writer_options(config: &Config, observer: Observer) -> WriterOptions {
    WriterOptions {
        observer,
        checkpoints: CheckpointPolicy {
            every_entries: config.log.checkpoint_every_entries,
            every: Duration::from_secs(config.log.checkpoint_every_seconds),
        },
        durable: config.log.durable,
        max_queue: config.limits.max_log_queue,
        node: config.store.url.as_ref().and(config.store.node.clone()),
    }
}

/// For `trustpath log redact`: retention over a stopped server's log (or a
/// fleet's database) with a writer of its own. Creates nothing: the log's
/// key must be there. Drop the retainer, then join the thread: the writer
/// signs a checkpoint covering the erasure record as it stops.
pub fn open_retainer(config: &Config) -> Result<(Arc<Retainer>, WriterThread), AppError> {
    config.validate()?;
    log_verifier(config)?;
    let opened = crate::store::open_server(config)?;
    let policies = Arc::new(PolicyStore::load(PolicyOrigin::from_config(config)?)?);
    let (log, thread) = LogWriter::start(
        opened.log.clone(),
        log_signer(config)?,
        writer_options(config, Observer::default()),
    )?;
    let retainer = Retainer::new(opened.log, log, policies, &config.retention);
    Ok((Arc::new(retainer), thread))
}

/// `trustpath keys rotate --log` on a stopped server's data directory: the
/// new key's `signing_key` entry is appended and the old key signs the
/// checkpoint covering it (its handover, see `log::key_history`), then the
/// new key takes the key file's place. Returns (old vkey, new vkey).
pub async fn rotate_log_key(config: &Config) -> Result<(String, String), AppError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    config.validate()?;
    if config.store.url.is_some() {
        return Err(AppError::Request(
            "log key rotation works on one node's data directory, not a fleet's store".into(),
        ));
    }
    log_verifier(config)?;
    let key_path = log_key_path(config);
    let key_err = |e: String| {
        AppError::Log(LogError::Open {
            path: key_path.clone(),
            message: e,
        })
    };
    let opened = crate::store::open_server(config)?;
    let store = opened.log.clone();
    let size = store.next_seq()?;
    if size == 0 {
        return Err(AppError::Request(
            "the log is empty: nothing to hand over".into(),
        ));
    }
    let old = log_signer(config)?;
    let old_vkey = old.verifier().vkey();
    let new_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let new = LogSigner::new(new_key.clone(), old.origin());
    let new_vkey = new.verifier().vkey();
    let revision = crate::log::query::entry(&store, size - 1)?.policy_revision;
    // The new key is on disk (beside the old one) before the log names it:
    // a crash after the handover leaves it there to be put in place.
    let pem = new_key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| key_err(e.to_string()))?;
    let staged = key_path.with_extension("pem.new");
    let _ = std::fs::remove_file(&staged);
    crate::secret_file::write_new(&staged, pem.as_bytes()).map_err(|e| key_err(e.to_string()))?;
    let (log, thread) = LogWriter::start(
        store.clone(),
        old,
        writer_options(config, Observer::default()),
    )?;
    let record = Record::SigningKey(crate::log::entry::SigningKeyRecord {
        purpose: KeyPurpose::Log,
        event: crate::log::entry::KeyEvent::Rotated,
        key_id: new_vkey.clone(),
        public_key: Value::String(new_vkey.clone()),
        previous_key_id: Some(old_vkey.clone()),
    });
    let appended = log
        .append(crate::time::rfc3339(chrono::Utc::now()), revision, record)
        .await;
    // The writer signs, with the old key, a checkpoint covering the entry
    // as it stops: the handover.
    drop(log);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| AppError::Log(LogError::Writer(e.to_string())))?;
    if let Err(e) = appended {
        let _ = std::fs::remove_file(&staged);
        return Err(e.into());
    }
    drop((store, opened));
    std::fs::rename(&staged, &key_path).map_err(|e| key_err(e.to_string()))?;
    Ok((old_vkey, new_vkey))
}

/// The log's verifier key, for tools that read a data directory: never
/// creates a key, since a missing key means there is nothing to verify with.
pub fn log_verifier(config: &Config) -> Result<NoteVerifier, AppError> {
    let path = log_key_path(config);
    if !path.exists() {
        return Err(AppError::Log(LogError::Open {
            path,
            message: "no log signing key here; give --public-key or the right --data-dir".into(),
        }));
    }
    Ok(log_signer(config)?.verifier().clone())
}

fn log_key_path(config: &Config) -> PathBuf {
    config
        .log
        .signing_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("log-signing-key.pem"))
}

/// Everything a recording pipeline needs, opened on the data directory.
pub struct Opened {
    pub decider: Decider,
    pub policy_recorder: PolicyRecorder,
    pub tool_calls: ToolCallChecker,
    pub grants: Arc<GrantChecker>,
    pub revoker: Revoker,
    pub signer: Arc<GrantSigner>,
    pub store: LogStore,
    pub log: LogWriter,
    pub log_verifier: NoteVerifier,
    pub retainer: Arc<Retainer>,
    pub writer_thread: WriterThread,
}

/// The store with the decision path's postings in memory (a log this
/// process alone writes), and how long reading them took.
fn remember_hot_postings(store: LogStore) -> Result<LogStore, AppError> {
    let started = std::time::Instant::now();
    let store = store.remembering()?;
    if let Some(hot) = store.hot_index() {
        let held: Vec<String> = hot
            .sizes()
            .iter()
            .map(|(field, values, complete)| {
                format!(
                    "{}={values}{}",
                    field.name(),
                    if *complete { "" } else { "+" }
                )
            })
            .collect();
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            held = %held.join(" "),
            "decision path look-ups read into memory"
        );
    }
    Ok(store)
}

/// Opens the data directory, loads policies and keys, starts the log writer,
/// and logs the keys and the policy bundle going into force when the log
/// has not seen them (before any decision is made with them).
pub async fn open(config: &Config) -> Result<Opened, AppError> {
    open_observed(config, Observer::default()).await
}

/// [`open`], with the log writer reporting to `observer` (metrics).
async fn open_observed(config: &Config, observer: Observer) -> Result<Opened, AppError> {
    config.validate()?;
    let opened_store = crate::store::open_server(config)?;
    let store = remember_hot_postings(opened_store.log.clone())?;
    let policies = Arc::new(PolicyStore::load(PolicyOrigin::from_config(config)?)?);
    let grant_key_path = signing_key_path(config);
    let grant_key_created = !grant_key_path.exists();
    let signer = Arc::new(
        GrantSigner::load_with_retired(
            &grant_key_path,
            &crate::grant::retired_dir(&config.data_dir),
            &config.issuer,
            chrono::Utc::now().timestamp(),
        )?
        .with_verification_keys(&config.grants.verification_key_files)?,
    );
    let log_key_created = !log_key_path(config).exists();
    let log_signer = log_signer(config)?;
    let log_verifier = log_signer.verifier().clone();
    // A fleet's replicas must sign with the same keys, or their grants and
    // checkpoints would not check on each other.
    opened_store.claim_keys(&[
        ("log", log_verifier.vkey().as_str()),
        ("grant", signer.kid()),
    ])?;
    let authenticator =
        Authenticator::from_config(config, ReplayGuard::Persistent(opened_store.jtis))?;
    let (log, writer_thread) =
        LogWriter::start(store.clone(), log_signer, writer_options(config, observer))?;
    let vkey = log_verifier.vkey();
    let keys = [
        KeyInUse {
            purpose: KeyPurpose::Log,
            key_id: vkey.clone(),
            public_key: Value::String(vkey),
            created: log_key_created,
        },
        KeyInUse {
            purpose: KeyPurpose::Grant,
            key_id: signer.kid().to_string(),
            public_key: signer.public_jwk().clone(),
            created: grant_key_created,
        },
    ];
    let in_force = policies.current();
    let source = config.policies.to_string();
    lifecycle::record_start(&store, &log, keys, &in_force, &source).await?;
    let policy_recorder = PolicyRecorder::new(policies.clone(), store.clone(), log.clone());
    let recording = Recording {
        signer: signer.clone(),
        log: log.clone(),
        store: store.clone(),
        issuer: config.issuer.clone(),
    };
    let grants = Arc::new(GrantChecker::new(signer.clone(), store.clone()));
    let tool_calls = ToolCallChecker::new(
        grants.clone(),
        policies.clone(),
        config.tool_calls.clone(),
        log.clone(),
    );
    let revoker = Revoker::new(store.clone(), log.clone(), policies.clone());
    let retainer = Arc::new(Retainer::new(
        store.clone(),
        log.clone(),
        policies.clone(),
        &config.retention,
    ));
    let decider = decider(config, authenticator, policies, Some(recording))?;
    Ok(Opened {
        decider,
        policy_recorder,
        tool_calls,
        grants,
        revoker,
        signer,
        store,
        log,
        log_verifier,
        retainer,
        writer_thread,
    })
}

impl Opened {
    /// Drops every log handle, so the writer signs its final checkpoint and
    /// stops, and waits for it.
    pub fn close(self) {
        // Named one by one so that a new field holding a log handle cannot
        // be forgotten here (the writer would never stop).
        let Opened {
            decider,
            policy_recorder,
            tool_calls,
            grants,
            revoker,
            signer,
            store,
            log,
            log_verifier,
            retainer,
            writer_thread,
        } = self;
        drop((
            decider,
            policy_recorder,
            tool_calls,
            grants,
            revoker,
            retainer,
        ));
        drop((signer, store, log));
        drop(log_verifier);
        writer_thread.join();
    }
}

/// A pipeline that neither signs nor logs, and keeps used `jti`s in memory:
/// for `trustpath eval` without `--record`.
pub fn dry_run(config: &Config) -> Result<Decider, AppError> {
    config.validate()?;
    let authenticator = Authenticator::from_config(config, ReplayGuard::ephemeral())?;
    let policies = Arc::new(PolicyStore::load(PolicyOrigin::from_config(config)?)?);
    decider(config, authenticator, policies, None)
}

pub use crate::tool_call::ToolCallEvaluation;

/// A tool-call check for `trustpath eval --tool-call`: the grant checked
/// against a stopped server's keys and log, the policy evaluated, nothing
/// logged or created.
pub fn dry_run_tool_call(
    config: &Config,
    request: &crate::model::ToolCallRequest,
) -> Result<ToolCallEvaluation, AppError> {
    config.validate()?;
    crate::tool_call::validate(request)
        .map_err(|e| AppError::Request(format!("{}: {}", e.field, e.message)))?;
    let policies = PolicyStore::load(PolicyOrigin::from_config(config)?)?;
    let store = crate::store::open_for_scan(&config.data_dir)?;
    let key = signing_key_path(config);
    if !key.exists() {
        return Err(AppError::Request(format!(
            "no grant key at {}: give the data directory of a server that has run",
            key.display()
        )));
    }
    let signer = GrantSigner::load_with_retired(
        &key,
        &crate::grant::retired_dir(&config.data_dir),
        &config.issuer,
        chrono::Utc::now().timestamp(),
    )?
    .with_verification_keys(&config.grants.verification_key_files)?;
    let grants = GrantChecker::new(Arc::new(signer), store);
    Ok(crate::tool_call::dry_run(
        &grants,
        &policies,
        &config.tool_calls,
        request,
    ))
}

/// The decision pipeline; recording (signing and logging) when given.
fn decider(
    config: &Config,
    authenticator: Authenticator,
    policies: Arc<PolicyStore>,
    recording: Option<Recording>,
) -> Result<Decider, AppError> {
    let retriever = Retriever::from_config(config).map_err(AppError::Fetch)?;
    Ok(Decider::new(
        authenticator,
        retriever,
        policies,
        limits(config),
        recording,
    ))
}

/// Runs the HTTP server until `shutdown` resolves. `on_listening` is told
/// the bound address (useful with port 0).
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), AppError> {
    let metrics = Arc::new(Metrics::default());
    let opened = open_observed(&config, Observer::new(Arc::new(metrics.writer.clone()))).await?;
    if config.callers.is_empty() {
        tracing::warn!(
            "no API callers configured: every local caller has every role; \
             listening on loopback only"
        );
    }
    let writer_thread = opened.writer_thread;
    let log_health = opened.log.health().clone();
    let durable = DurableLog {
        store: opened.store.clone(),
        written: opened.log.durable_size(),
    };
    let (sinks, prepared_sinks) =
        crate::sinks::prepare(&config.log.sinks, &config.data_dir, durable.clone())?;
    let console = console_settings(&config, &opened.log_verifier)?;
    let log = opened.log.clone();
    let spans = crate::telemetry::SpanExport::start(&config.telemetry)?.map(Arc::new);
    let ticker = tokio::spawn(tick_checkpoints(opened.log));
    let state = Arc::new(AppState {
        decider: opened.decider,
        policy_recorder: opened.policy_recorder,
        tool_calls: opened.tool_calls,
        grants: opened.grants,
        revoker: opened.revoker,
        signer: opened.signer,
        store: opened.store,
        log_verifier: opened.log_verifier,
        retainer: opened.retainer,
        callers: Callers::from_config(&config.callers),
        in_flight: tokio::sync::Semaphore::new(config.limits.max_in_flight_decisions),
        log_health,
        data_dir: config.data_dir.clone(),
        min_free_disk_bytes: config.limits.min_free_disk_mb.saturating_mul(1_000_000),
        metrics,
        log,
        sinks,
        spans: spans.clone(),
        issuer: config.issuer.clone(),
        console,
        durable,
        bundle_poll: config.bundle.poll_interval.0,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    let policies = state.decider.policies().current();
    tracing::info!(
        %addr,
        policy_revision = %policies.revision().as_str(),
        policy_results = %policies.result_keeping(),
        "listening"
    );
    on_listening(addr);
    // After the "listening" line: a stdout sink writes to the same stream.
    let sink_tasks = prepared_sinks.spawn();

    let maintenance = tokio::spawn(maintain(state.clone()));
    let retention = tokio::spawn(crate::retention::run(
        state.retainer.clone(),
        config.retention.interval.0,
    ));
    crate::server::connections::serve(
        listener,
        router(state.clone(), config.limits.max_body_bytes),
        &config.limits,
        shutdown,
    )
    .await;
    maintenance.abort();
    let _ = maintenance.await;
    retention.abort();
    let _ = retention.await;
    ticker.abort();
    let _ = ticker.await;
    // Sinks deliver at least once: one stopped mid-batch sends it again
    // from its cursor at the next start.
    for task in sink_tasks {
        task.abort();
        let _ = task.await;
    }
    // Dropping the last handle to the log writer lets it flush and stop.
    drop(state);
    if let Some(spans) = spans {
        match Arc::try_unwrap(spans) {
            Ok(spans) => spans.shutdown(Duration::from_secs(5)),
            // Still held by a connection being torn down: dropped off the runtime.
            Err(spans) => drop(std::thread::spawn(move || drop(spans))),
        }
    }
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
}

/// Wakes the log writer once a second so time-based checkpoints happen
/// when no decisions arrive.
async fn tick_checkpoints(log: LogWriter) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        log.tick().await;
    }
}

/// Loads the policies (on SIGHUP always, otherwise when they changed),
/// logs the new bundle and puts it in force. Whatever fails, the running
/// bundle stays in force; a refused policy set is logged (`policy_rejected`),
/// counted and shown on `/ready`.
async fn reload_policies(state: &Arc<AppState>, trigger: PolicyTrigger) {
    let recorder = state.policy_recorder.clone();
    // Reads, downloads, hashes and compiles: kept off the async workers.
    let loaded = tokio::task::spawn_blocking(move || match trigger {
        PolicyTrigger::FileChange | PolicyTrigger::Poll => recorder.policies().load_if_changed(),
        _ => recorder.policies().load_now().map(Some),
    })
    .await;
    let bundle = match loaded {
        Ok(Ok(Some(bundle))) => bundle,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            state.metrics.policy_reload(false);
            tracing::error!(error = %e, "policies do not load; the running policy stays in force");
            let rejection = state.policy_recorder.policies().rejection();
            if let Some(rejection) = rejection {
                if let Err(e) = state.policy_recorder.rejected(&rejection, trigger).await {
                    tracing::error!(error = %e, "the refused policies could not be logged");
                }
            }
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "policy reload task failed");
            return;
        }
    };
    match state.policy_recorder.put_in_force(bundle, trigger).await {
        Ok(bundle) => {
            state.metrics.policy_reload(true);
            tracing::info!(policy_revision = %bundle.revision().as_str(), ?trigger, "policies reloaded")
        }
        Err(e) => {
            state.metrics.policy_reload(false);
            tracing::error!(
                error = %e,
                "the reloaded policies could not be logged; the running policy stays in force"
            )
        }
    }
}

/// How often a policy directory is checked for changes (bundles: the
/// `[bundle] poll_interval`).
const POLICY_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Background upkeep: policy reload on SIGHUP and when the files change,
/// pruning of expired `jti`s.
async fn maintain(state: Arc<AppState>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    let (check_every, check_trigger) = match state.policy_recorder.policies().source() {
        PolicySource::Directory(_) => (POLICY_CHECK_INTERVAL, PolicyTrigger::FileChange),
        PolicySource::BundleFile(_) => (state.bundle_poll, PolicyTrigger::FileChange),
        PolicySource::BundleUrl(_) => (state.bundle_poll, PolicyTrigger::Poll),
    };
    let mut policy_check = tokio::time::interval(check_every);
    policy_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        tokio::select! {
            _ = hup => reload_policies(&state, PolicyTrigger::Sighup).await,
            _ = policy_check.tick() => reload_policies(&state, check_trigger).await,
            _ = prune.tick() => {
                let now = chrono::Utc::now().timestamp();
                let state = state.clone();
                // A scan of the jti tree: kept off the async workers.
                let pruned = tokio::task::spawn_blocking(move || {
                    state.decider.authenticator().prune_replay_cache(now)
                })
                .await;
                if let Ok(Err(e)) = pruned {
                    tracing::warn!(error = %e, "pruning used jtis failed");
                }
            }
        }
    }
}
