//! The trustpath command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, Parser, Subcommand};
use trustpath::config::{Config, PolicySource};
use trustpath::model::ConnectionRequest;

mod commands;

// The decision path allocates many small objects (JSON, policy values);
// mimalloc serves them faster than glibc's malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "trustpath",
    version,
    about = "Policy decision point for MCP authorization"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text, or as JSON objects (one per line, with the
    /// request's trace id) for a log pipeline [default: the config's
    /// `log_format`, else text]
    #[arg(long, global = true, env = "TRUSTPATH_LOG_FORMAT",
          value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// No progress bars and no informational lines on stderr (results and
    /// errors still print). Bars are drawn only when stderr is a terminal.
    #[arg(long, short, global = true)]
    quiet: bool,
}

impl Cli {
    /// `--log-format` (or its variable), else `serve`'s config file's
    /// `log_format`, else text. A config that does not load is reported
    /// once the command reads it.
    fn log_format(&self) -> String {
        if let Some(format) = &self.log_format {
            return format.clone();
        }
        let configured = match &self.command {
            Command::Serve(settings) => settings
                .config
                .as_deref()
                .and_then(|path| Config::from_file(path).ok())
                .and_then(|config| config.log_format),
            _ => None,
        };
        match configured {
            Some(trustpath::config::LogFormat::Json) => "json".into(),
            _ => "text".into(),
        }
    }
}

// Parsed once per process: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the HTTP decision service.
    Serve(Settings),
    /// Decide one request from a JSON file, without a server.
    Eval {
        /// The connection request (the body of POST /v1/decisions), or with
        /// --tool-call a tool-call request (the body of POST /v1/tool-calls);
        /// with --query, the policy input itself (default: null).
        #[arg(long, required_unless_present = "query")]
        input: Option<PathBuf>,
        /// Evaluate one rule of the policies (`data.pkg.rule`, or a whole
        /// package `data.pkg`) against --input, as `opa eval` does, and
        /// print its value as JSON. Undefined exits 1, an error 3.
        #[arg(long, conflicts_with_all = ["tool_call", "record"])]
        query: Option<String>,
        /// Check a tool call: its grant against --data-dir's keys and log (a
        /// stopped server's), then the tool-call policy. Nothing is logged.
        #[arg(long, conflicts_with = "record")]
        tool_call: bool,
        /// Also sign a grant and append the decision to the log in --data-dir
        /// (the server must not be running on it).
        #[arg(long)]
        record: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Work on the decision log of a stopped server, or on an export.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Print shell completions for trustpath (bash, zsh, fish, elvish,
    /// powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print trustpath's man page (roff) to stdout.
    Man,
    /// Probe a running server: exit 0 when `/health` (or, with --ready,
    /// `/ready`) answers 200, 1 otherwise. For container health checks,
    /// where no curl is installed.
    Health {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Readiness (`/ready`) instead of liveness.
        #[arg(long)]
        ready: bool,
    },
    /// Check the effective configuration (file, TRUSTPATH_SECTION__KEY
    /// variables, flags): print it with secrets hidden, or name the key at
    /// fault and where its value came from (exit 2).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Set up and fill a fleet's PostgreSQL store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Run the policies' own test_* rules, as `opa test` does. Exit 0 when
    /// all pass, 1 on a failure or error or when the policies do not load.
    Test {
        /// The policy directory, or an OPA bundle file (.tar.gz).
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Only tests whose full path (data.pkg.test_name) matches this regex.
        #[arg(long)]
        run: Option<String>,
        /// `pretty` (or `text`) for people, `json`, or `junit` (XML) for CI.
        #[arg(long, value_parser = ["pretty", "text", "json", "junit"], default_value = "pretty")]
        format: String,
        /// Report the lines the tests evaluated and those they did not.
        #[arg(long)]
        coverage: bool,
        /// Fail (exit 1) when fewer than this percentage of the policies'
        /// lines are covered; implies --coverage.
        #[arg(long, value_name = "PCT", value_parser = percentage)]
        threshold: Option<f64>,
        /// List passing tests too.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Re-evaluate logged decisions and tool calls against candidate
    /// policies and report each one that would change.
    #[command(group(ArgGroup::new("source").required(true).args(["data_dir", "store", "export"])))]
    Replay {
        /// The candidate policies: a directory or an OPA bundle file (.tar.gz).
        #[arg(long)]
        policies: PathBuf,
        /// A stopped server's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A fleet's database (postgres://USER@HOST/DB); replicas may be serving.
        #[arg(long, env = "TRUSTPATH_STORE_URL")]
        store: Option<String>,
        /// An NDJSON export from `trustpath log export`.
        #[arg(long)]
        export: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
        /// `json`: one line per change, then a summary line; `junit`: a
        /// JUnit XML report, a test case per changed entry.
        #[arg(long, value_parser = ["text", "json", "junit"], default_value = "text")]
        format: String,
        /// Exit 1 if anything changed.
        #[arg(long)]
        fail_on_change: bool,
        /// Exit 1 if these changes happen, e.g. `widened,newly-allowed`
        /// (newly-denied, newly-allowed, widened, narrowed, tools, ttl, error).
        #[arg(long)]
        fail_on: Option<String>,
        /// Evaluator threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Exit 0 even when no decision or tool call was re-evaluated
        /// (otherwise that is an error: the wrong file, or a filter that
        /// matches nothing).
        #[arg(long)]
        allow_empty: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// A new grant signing key (server stopped; used from its next start).
    /// The old key stays in the JWKS, and grants it signed keep verifying,
    /// until the longest grant it could have signed has expired
    /// (grants.max_ttl_seconds + assertions.leeway_seconds); then it leaves. The log records the
    /// new key at the next start (a signing_key entry naming the old one).
    Rotate {
        /// The log's checkpoint key instead: the old key signs the
        /// checkpoint over the new key's `signing_key` entry, and `log
        /// verify` follows that handover, pinned to either key.
        #[arg(long)]
        log: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load, validate and print the effective configuration as TOML.
    Check(Settings),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Apply the schema migrations the database lacks (safe to repeat).
    Migrate {
        /// postgres://USER@HOST/DB
        #[arg(long, env = "TRUSTPATH_STORE_URL")]
        store: String,
    },
    /// Copy a single node's log (a stopped server's data directory) into
    /// an empty fleet database: every seq, leaf hash and checkpoint kept.
    Copy {
        /// The data directory to copy from.
        #[arg(long)]
        from: PathBuf,
        /// postgres://USER@HOST/DB, migrated and empty.
        #[arg(long)]
        to: String,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum LogCommand {
    /// Recompute every leaf and the tree, check every checkpoint, and name
    /// the first entry changed, removed, reordered or inserted.
    Verify {
        /// Verify an export file instead of the data directory.
        #[arg(long, requires = "public_key")]
        export: Option<PathBuf>,
        /// The log's verifier key (signed-note vkey), as text or a file path.
        #[arg(long)]
        public_key: Option<String>,
        /// Accept an export that is a selection (filtered): each entry is
        /// proven included, but a selection cannot show that none was left
        /// out, so without this flag it fails.
        #[arg(long, requires = "export")]
        selection: bool,
        /// The log is being written (a fleet's, while replicas serve):
        /// verify up to the latest signed checkpoint, and report the newer
        /// entries, not yet covered by one, without failing on them.
        #[arg(long, conflicts_with = "export")]
        live: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Write entries and the latest checkpoint as NDJSON to stdout. With
    /// filters, only the matching entries, each with an inclusion proof.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// One past the last seq (default: the latest checkpoint's size).
        #[arg(long)]
        to: Option<u64>,
        /// Export from a running server (GET /v1/log/export), e.g.
        /// http://127.0.0.1:8080, instead of a stopped server's log.
        #[arg(long, conflicts_with_all = ["config", "data_dir", "store"])]
        url: Option<String>,
        /// The audit caller's token, with --url.
        #[arg(
            long,
            env = "TRUSTPATH_TOKEN",
            hide_env_values = true,
            requires = "url"
        )]
        token: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Search the log: filters combine (AND), newest first.
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// NDJSON (the stored entries) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// A session's whole trust path, oldest first.
    Session {
        session_id: String,
        /// NDJSON (the stored entries) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print an inclusion proof for one entry against the latest checkpoint.
    Proof {
        #[arg(long)]
        seq: u64,
        #[command(flatten)]
        settings: Settings,
    },
    /// Erase one person: redact their personal fields across the whole log
    /// (their decisions, and the grants and tool calls of those sessions),
    /// with a logged record of the erasure. On a stopped server's data
    /// directory, or a fleet's database while replicas serve.
    Redact {
        /// The subject as ISS/SUB (split at the last '/'), or a bare SUB
        /// for whatever issuer.
        #[arg(long)]
        subject: String,
        /// Who asked, kept in the erasure record.
        #[arg(long)]
        requested_by: String,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print a running server's entries as NDJSON, oldest first, from
    /// --from-seq on; with --follow, keep printing new ones as they are
    /// written. Needs the `audit` role (token in TRUSTPATH_TOKEN).
    Tail {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        url: String,
        #[arg(long, env = "TRUSTPATH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        #[arg(long)]
        follow: bool,
    },
    /// Entries and bytes by kind and by age, growth per day, and the size
    /// the log would have under the configured `[retention]`.
    Stats {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

/// Log search filters, the same as `GET /v1/decisions`.
#[derive(Args)]
struct FilterArgs {
    #[arg(long)]
    session: Option<String>,
    #[arg(long)]
    client: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long)]
    scope: Option<String>,
    /// Which scope list --scope looks in.
    #[arg(long, value_parser = ["requested", "approved", "denied"], default_value = "requested")]
    scope_state: String,
    /// Decision outcome, or `allowed`/`denied` for tool calls.
    #[arg(long, value_parser = ["approved", "reduced", "denied", "allowed"])]
    outcome: Option<String>,
    #[arg(long, value_parser = trustpath::log::entry::KINDS)]
    kind: Option<String>,
    /// A grant's jti: its issuance, its tool calls, its revocation.
    #[arg(long)]
    grant: Option<String>,
    #[arg(long)]
    tool: Option<String>,
    /// RFC 3339 time, inclusive.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time, exclusive.
    #[arg(long)]
    until: Option<String>,
}

impl FilterArgs {
    /// The same filter `GET /v1/decisions` builds from the same names.
    fn to_filter(&self) -> Result<trustpath::log::query::Filter> {
        let given = [
            ("session_id", &self.session),
            ("client_id", &self.client),
            ("subject", &self.subject),
            ("issuer", &self.issuer),
            ("scope", &self.scope),
            ("outcome", &self.outcome),
            ("kind", &self.kind),
            ("grant", &self.grant),
            ("tool", &self.tool),
            ("since", &self.since),
            ("until", &self.until),
        ];
        let mut params: Vec<(&str, &str)> = given
            .iter()
            .filter_map(|(name, value)| Some((*name, value.as_deref()?)))
            .collect();
        if self.scope.is_some() {
            params.push(("scope_state", &self.scope_state));
        }
        trustpath::log::query::Filter::from_params(params)
            .map_err(|e| commands::exit::usage(format!("--{}: {}", cli_flag(&e.field), e.message)))
    }
}

/// The CLI flag for a filter parameter's name.
fn cli_flag(param: &str) -> String {
    param.trim_end_matches("_id").replace('_', "-")
}

/// `--threshold`: a percentage, 0 to 100.
fn percentage(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 100"))
    }
}

/// `trustpath health`: one GET with a short timeout.
async fn health(url: &str, ready: bool) -> Result<()> {
    let path = if ready { "ready" } else { "health" };
    let endpoint = format!("{}/{path}", url.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(&endpoint)
        .send()
        .await
        // Nothing answering is what the probe found, not a failure to probe.
        .map_err(|e| commands::exit::Found(format!("GET {endpoint}: {e}")))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(commands::exit::Found(format!("{endpoint} answered {status}: {body}")).into());
    }
    println!("{endpoint}: {status}");
    Ok(())
}

/// Settings shared by the commands; flags and `TRUSTPATH_*` variables
/// override the config file.
#[derive(Args)]
struct Settings {
    /// TOML config file [default: none; every key has a default]
    #[arg(long, env = "TRUSTPATH_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address; port 0 picks a free port [default: the config's
    /// `listen`, else 127.0.0.1:8080]
    #[arg(long, env = "TRUSTPATH_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory: the embedded log, keys [default: the config's
    /// `data_dir`, else ./data]
    #[arg(long, env = "TRUSTPATH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A fleet's shared store, postgres://USER@HOST/DB, instead of the
    /// data directory's log [default: the config's `store.url`, else none]
    #[arg(long, env = "TRUSTPATH_STORE_URL")]
    store: Option<String>,
    /// This replica's name in a fleet [default: the config's `store.node`]
    #[arg(long, env = "TRUSTPATH_NODE")]
    node: Option<String>,
    /// Rego policies: a directory, an OPA bundle file (.tar.gz) or an
    /// https:// bundle URL [default: the config's `policies`, else
    /// ./policies]
    #[arg(long, env = "TRUSTPATH_POLICIES", value_parser = PolicySource::parse)]
    policies: Option<PolicySource>,
    /// `iss` of signed grants [default: the config's `issuer`, else
    /// https://trustpath.local]
    #[arg(long, env = "TRUSTPATH_ISSUER")]
    issuer: Option<String>,
}

impl Settings {
    fn resolve(self) -> Result<Config> {
        let (config, _) = self.resolve_with_sources()?;
        config.validate()?;
        Ok(config)
    }

    /// The file, the `TRUSTPATH_SECTION__KEY` variables, then the flags
    /// (and their variables); not validated yet. The keys a flag set.
    fn resolve_with_sources(self) -> Result<(Config, commands::config::Origins)> {
        let (mut config, sources) = Config::load(self.config.as_deref())?;
        let mut flags = Vec::new();
        if let Some(listen) = self.listen {
            config.listen = listen;
            flags.push("listen");
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
            flags.push("data_dir");
        }
        if let Some(url) = self.store {
            config.store.url = Some(url);
            flags.push("store.url");
        }
        if let Some(node) = self.node {
            config.store.node = Some(node);
            flags.push("store.node");
        }
        if let Some(source) = self.policies {
            config.policies = source;
            flags.push("policies");
        }
        if let Some(issuer) = self.issuer {
            config.issuer = issuer;
            flags.push("issuer");
        }
        Ok((config, commands::config::Origins { sources, flags }))
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            // The whole context chain on one line, without a backtrace.
            eprintln!("Error: {e:#}");
            commands::exit::of_error(&e)
        }
    }
}

fn run() -> Result<std::process::ExitCode> {
    // Whatever trustpath writes (the data directory's log, keys and replay
    // state) is for its own user only.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    // The storage engines report each failed write themselves, several
    // lines a second while a disk is full; the log writer reports storage
    // failures once and then at a bounded rate, so the engines' own lines
    // are off unless asked for by name.
    let mut filter = std::env::var("TRUSTPATH_LOG").unwrap_or_else(|_| "info".into());
    for engine in ["sled", "fjall", "lsm_tree"] {
        if !filter.contains(engine) {
            filter = format!("{filter},{engine}=off");
        }
    }
    let cli = Cli::parse();
    commands::progress::set_quiet(cli.quiet);
    // A command whose output goes into `head` ends quietly when the pipe
    // closes (the default action of SIGPIPE), instead of failing a write.
    // Not the server: it must outlive a closed stdout (a stdout sink).
    #[cfg(unix)]
    if !matches!(cli.command, Command::Serve(_)) {
        // SAFETY: restores the default disposition of one signal, before
        // any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| "info,sled=off,fjall=off,lsm_tree=off".into()),
        )
        // Request-controlled text reaches log fields: each line is escaped
        // whole, so no field can forge a line or drive the terminal.
        .with_ansi(false)
        .with_writer(|| trustpath::text::LineEscaping(std::io::stderr()));
    if cli.log_format() == "json" {
        subscriber
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        subscriber.init();
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let done = |result: Result<()>| result.map(|()| std::process::ExitCode::SUCCESS);
    match cli.command {
        Command::Serve(settings) => done(runtime.block_on(serve(settings.resolve()?))),
        Command::Eval {
            input,
            query: Some(query),
            settings,
            ..
        } => done(commands::policy_eval::run(
            &settings.resolve()?,
            &query,
            input.as_deref(),
        )),
        Command::Eval {
            input: Some(input),
            tool_call: true,
            settings,
            ..
        } => done(eval_tool_call(&settings.resolve()?, &input)),
        Command::Eval {
            input: Some(input),
            record,
            settings,
            ..
        } => done(runtime.block_on(eval(settings.resolve()?, input, record))),
        Command::Eval { input: None, .. } => {
            done(Err(commands::exit::usage("--input is required")))
        }
        Command::Log { command } => done(commands::log::run(command)),
        Command::Store { command } => done(commands::store::run(command)),
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    log: true,
                    settings,
                },
        } => done(commands::keys::rotate_log_key(&settings.resolve()?)),
        Command::Keys {
            command: KeysCommand::Rotate { settings, .. },
        } => done(commands::keys::rotate_grant_key(&settings.resolve()?)),
        Command::Config {
            command: ConfigCommand::Check(settings),
        } => {
            let (config, origins) = settings.resolve_with_sources()?;
            done(commands::config::check(&config, &origins))
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "trustpath", &mut std::io::stdout());
            done(Ok(()))
        }
        Command::Health { url, ready } => done(runtime.block_on(health(&url, ready))),
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            std::io::Write::write_all(&mut std::io::stdout(), &page)?;
            done(Ok(()))
        }
        Command::Test {
            dir,
            run,
            format,
            coverage,
            threshold,
            verbose,
        } => {
            let format = match format.as_str() {
                "json" => commands::policy_test::TestFormat::Json,
                "junit" => commands::policy_test::TestFormat::Junit,
                _ => commands::policy_test::TestFormat::Pretty,
            };
            commands::policy_test::run(&dir, run.as_deref(), format, coverage, threshold, verbose)
        }
        Command::Replay {
            policies,
            data_dir,
            store,
            export,
            filter,
            format,
            fail_on_change,
            fail_on,
            workers,
            allow_empty,
        } => {
            let fail_on = match (fail_on_change, fail_on) {
                (true, _) => trustpath::replay::ChangeKind::ALL.to_vec(),
                (false, Some(list)) => commands::replay::parse_fail_on(&list)?,
                (false, None) => Vec::new(),
            };
            commands::replay::run(commands::replay::ReplayArgs {
                candidate: &policies,
                data_dir,
                store,
                export,
                filter: filter.to_filter()?,
                format: match format.as_str() {
                    "json" => commands::replay::ReplayFormat::Json,
                    "junit" => commands::replay::ReplayFormat::Junit,
                    _ => commands::replay::ReplayFormat::Text,
                },
                fail_on,
                workers,
                allow_empty,
            })
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    // Installed before the server says it listens: a SIGTERM that arrives
    // at any moment after that stops it gracefully, never by the default
    // action (which would skip the final checkpoint).
    let shutdown = shutdown_signal().context("installing the signal handlers")?;
    trustpath::app::serve(config, shutdown, |addr| {
        // On stdout, so scripts and tests can find a port chosen with :0.
        println!("trustpath listening on http://{addr}");
    })
    .await
    .context("trustpath serve")
}

async fn eval(config: Config, input: PathBuf, record: bool) -> Result<()> {
    let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let request: ConnectionRequest = trustpath::input::parse_json(&bytes)
        .with_context(|| format!("{}: not a valid connection request", input.display()))?;
    let outcome = if record {
        let opened = trustpath::app::open(&config)
            .await
            .context("opening the data directory")?;
        let outcome = opened.decider.decide(request).await;
        opened.close();
        outcome?
    } else {
        trustpath::app::dry_run(&config)?.decide(request).await?
    };
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(())
}

/// `trustpath eval --tool-call`.
fn eval_tool_call(config: &Config, input: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let request: trustpath::model::ToolCallRequest =
        trustpath::input::parse_json(&bytes).map_err(|e| {
            commands::exit::usage(format!(
                "{}: not a valid tool-call request: {e}",
                input.display()
            ))
        })?;
    let checked = trustpath::app::dry_run_tool_call(config, &request).map_err(|e| match e {
        trustpath::app::AppError::Request(message) => {
            commands::exit::usage(format!("{}: {message}", input.display()))
        }
        other => other.into(),
    })?;
    println!("{}", serde_json::to_string_pretty(&checked)?);
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; the handlers are installed on the call.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
