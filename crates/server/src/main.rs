//! `chingu-server`: settings from defaults, then `--config FILE`, then environment
//! variables and flags; logs to stderr; stops gracefully on SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chingu_server::Config;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "Chingu matchmaking and signaling server")]
struct Args {
    /// TOML file with any of the settings in docs/server.md.
    #[arg(long, env = "CHINGU_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "CHINGU_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the SQLite database.
    #[arg(long, env = "CHINGU_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "CHINGU_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    #[arg(long, env = "CHINGU_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Log lines as JSON objects instead of text.
    #[arg(long, env = "CHINGU_LOG_JSON")]
    log_json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_json);
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    if let Some(n) = args.max_connections_per_ip {
        config.max_connections_per_ip = n;
    }
    if let Err(e) = chingu_server::fd_limit::raise() {
        tracing::warn!("could not raise the open-file limit: {e}");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a signal that arrives once the port is announced must shut down
    // gracefully, not kill the process with the default action.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let server = chingu_server::start(config).await?;
    // One line on stdout so scripts and tests can find the port when it was 0.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "chingu-server listening on {}", server.ws_url())?;
    stdout.flush()?;
    drop(stdout);
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("interrupted: shutting down"),
    }
    server.shutdown();
    server.stopped().await;
    Ok(())
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
