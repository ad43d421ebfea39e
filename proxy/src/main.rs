//! The `sluice` command: run the proxy, check a config, serve a demo
//! upstream, write development certificates, or set up a sidecar's
//! traffic redirection.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "HTTP proxy with a chain of sandboxed WebAssembly filters"
)]
struct Cli {
    /// Worker threads of the async runtime (default: one per CPU). With 1,
    /// everything runs on one thread (a current-thread runtime), the
    /// cheapest setup for a sidecar.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configuration.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Also serve an echo demo upstream on this address, optionally
        /// named (`canary=127.0.0.1:9001`); repeat for several.
        #[arg(long, value_name = "[NAME=]ADDR", value_parser = parse_demo_upstream)]
        demo_upstream: Vec<(String, SocketAddr)>,
        /// Before loading the config, write development certificates into
        /// this directory unless they are there (as `certs dev` does).
        #[arg(long, value_name = "DIR")]
        dev_certs: Option<PathBuf>,
    },
    /// Certificate helpers.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Validate a configuration and load every plugin it uses, then exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve only the echo demo upstream.
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
    /// Install the nat rules that redirect a pod's TCP traffic to the
    /// interception listeners (those with `intercept`), as a sidecar's init
    /// container would; needs root or CAP_NET_ADMIN. Idempotent.
    Iptables {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print the commands as a shell script instead of running them.
        #[arg(long)]
        dry_run: bool,
        /// Remove the rules instead of installing them.
        #[arg(long)]
        remove: bool,
        /// Use nftables (`nft`, table `sluice`) instead of iptables.
        #[arg(long)]
        nftables: bool,
        /// IPv4 only: leave IPv6 traffic alone (no ip6tables rules).
        #[arg(long)]
        no_ipv6: bool,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a development CA, a server certificate for localhost and two
    /// client certificates with SPIFFE IDs (PEM files). Not for production.
    Dev {
        /// Where to write them.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

/// `NAME=ADDR` or `ADDR` (named `demo`).
fn parse_demo_upstream(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = text.split_once('=').unwrap_or(("demo", text));
    let addr = addr.parse().map_err(|e| format!("`{addr}`: {e}"))?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("`{name}` is not a usable name (letters, digits, - and _)"));
    }
    Ok((name.to_string(), addr))
}

/// Log lines queued for stderr at most; past that, lines are dropped.
/// Filter lines are at most 4 KiB and budgeted per plugin, so this bounds
/// the queue to a few tens of MiB in the worst case.
const LOG_QUEUE_LINES: usize = 8192;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `iptables` runs a few commands: no logging, no runtime.
    if let Command::Iptables {
        config,
        dry_run,
        remove,
        nftables,
        no_ipv6,
    } = &cli.command
    {
        let options = sluice::sidecar::iptables::Options {
            dry_run: *dry_run,
            remove: *remove,
            nftables: *nftables,
            ipv6: !*no_ipv6,
        };
        return match iptables(config, &options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let dev_certs = match &cli.command {
        Command::Run {
            dev_certs: Some(dir), ..
        } => Some(dir),
        Command::Certs {
            command: CertsCommand::Dev { out },
        } => Some(out),
        _ => None,
    };
    if let Some(dir) = dev_certs {
        match sluice::dev_certs::ensure(dir) {
            Ok(true) => eprintln!("wrote development certificates to {}", dir.display()),
            Ok(false) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        if matches!(cli.command, Command::Certs { .. }) {
            return ExitCode::SUCCESS;
        }
    }
    // RUST_LOG wins over the config's `[log] level`, which wins over `info`.
    // `run` reads its config once, here, so the log level is known before
    // logging starts.
    let loaded = match &cli.command {
        Command::Run { config, .. } => Some(sluice::config::Config::load(config)),
        _ => None,
    };
    let configured = loaded
        .as_ref()
        .and_then(|l| l.as_ref().ok())
        .and_then(|c| c.log_level.as_deref());
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed_by_env = from_env.is_some();
    let filter = from_env
        .or_else(|| configured.and_then(|level| EnvFilter::try_new(level).ok()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    // The filter sits behind a reload handle so a config reload can change
    // `[log] level` while running.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Serving threads never wait for stderr: lines go through a bounded
    // queue to a writer thread, and are dropped (and counted, as
    // `sluice_log_dropped_lines_total`) when the queue is full. `_log_guard`
    // lives until `main` returns, when it flushes what is queued.
    let (writer, _log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("sluice-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    sluice::telemetry::log_filter::install_dropped_lines(move || dropped.dropped_lines() as u64);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    sluice::telemetry::log_filter::install(move |level| {
        if fixed_by_env {
            return Err("RUST_LOG is set and overrides [log] level".into());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    // One thread: a current-thread runtime, which serves from the main
    // thread without the work-stealing scheduler's cross-thread handoffs.
    let mut builder = match cli.threads {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command, loaded))
}

async fn run(
    command: Command,
    loaded: Option<Result<sluice::config::Config, sluice::config::ConfigError>>,
) -> ExitCode {
    match command {
        Command::Check { config } => match sluice::server::check(&config).await {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::DemoUpstream { listen } => match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => {
                tracing::info!(address = %listen, "demo upstream listening");
                sluice::demo_upstream::serve(l, "demo".into()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Certs { .. } | Command::Iptables { .. } => ExitCode::SUCCESS,
        Command::Run {
            config, demo_upstream, ..
        } => {
            for (name, addr) in demo_upstream {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => {
                        tracing::info!(address = %addr, name, "demo upstream listening");
                        tokio::spawn(sluice::demo_upstream::serve(l, name));
                    }
                    Err(e) => {
                        eprintln!("error: cannot listen on {addr} for the demo upstream: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let mut loaded = match loaded.unwrap_or_else(|| sluice::config::Config::load(&config)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // `/config` shows the log filter in force: RUST_LOG's when set.
            if let Ok(from_env) = std::env::var("RUST_LOG")
                && EnvFilter::try_new(&from_env).is_ok()
            {
                loaded.log_level = Some(from_env);
            }
            // Handled from before the listeners open: a SIGTERM that comes
            // while the server starts drains it once started, instead of
            // killing the process.
            let stop = stop_signal();
            match sluice::server::start(loaded).await {
                Ok(running) => {
                    stop.await;
                    tracing::info!("draining: no new connections; waiting for in-flight requests");
                    if running.shutdown().await {
                        tracing::info!("drained; exiting");
                    } else {
                        tracing::warn!("grace period over with requests still in flight; exiting");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `sluice iptables`: the plan from the config's `[sidecar]`, printed or
/// applied.
fn iptables(config: &Path, options: &sluice::sidecar::iptables::Options) -> Result<(), String> {
    let loaded = sluice::config::Config::load(config).map_err(|e| e.to_string())?;
    let sidecar = loaded.bootstrap.sidecar.ok_or_else(|| {
        format!(
            "{}: nothing to redirect: `sluice iptables` needs a listener with \
             `intercept = \"inbound\"` or `intercept = \"outbound\"`",
            config.display()
        )
    })?;
    let plan =
        sluice::sidecar::iptables::Plan::from_config(&sidecar).map_err(|e| format!("{}: {e}", config.display()))?;
    sluice::sidecar::iptables::run(&plan, options, &mut std::io::stdout().lock()).map_err(|e| e.to_string())
}

/// SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C): handled from the
/// call on (the process is no longer killed by them), awaited later.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| tracing::warn!(error = %e, "cannot handle SIGTERM"))
        .ok();
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| tracing::warn!(error = %e, "cannot handle SIGINT"))
        .ok();
    async move {
        tokio::select! {
            _ = next(&mut term) => tracing::info!("SIGTERM"),
            _ = next(&mut int) => tracing::info!("SIGINT"),
        }
    }
}

/// The signal's next delivery; never, for one that could not be handled.
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
