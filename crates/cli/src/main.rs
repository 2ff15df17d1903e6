//! `chingu-cli`: headless Chingu tools.

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Headless Chingu peer and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate many clients matching and signaling against a server; prints figures.
    Load {
        /// WebSocket URL of the server, e.g. ws://127.0.0.1:7878/v1/ws
        #[arg(long)]
        server: String,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Seconds to measure, after every client has connected.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Milliseconds each simulated call lasts before Next.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
        /// Spread clients over this many loopback source addresses (127.0.1.x).
        #[arg(long, default_value_t = 0)]
        source_addresses: u32,
        #[arg(long, default_value_t = 200)]
        connect_concurrency: usize,
        /// Report this process's RSS and CPU use (the server's pid).
        #[arg(long)]
        server_pid: Option<u32>,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_fd_limit();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Load {
            server,
            clients,
            duration,
            hold_ms,
            source_addresses,
            connect_concurrency,
            server_pid,
            json,
        } => {
            let config = chingu_cli::load::LoadConfig {
                server,
                clients,
                duration: Duration::from_secs(duration),
                source_addresses,
                hold: Duration::from_millis(hold_ms),
                connect_concurrency,
                server_pid,
            };
            let report = runtime.block_on(chingu_cli::load::run(config))?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            }
        }
    }
    Ok(())
}

/// Each simulated client is a socket; lift the soft open-file limit to the hard one.
#[allow(unsafe_code)]
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
