//! `chingu-cli`: headless Chingu tools.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Headless Chingu peer and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct PeerArgs {
    /// WebSocket URL of the server, e.g. ws://127.0.0.1:7878/v1/ws
    #[arg(long)]
    server: String,
    #[arg(long, default_value = "chingu-bot")]
    nickname: String,
    /// Languages, comma separated (BCP 47).
    #[arg(long, default_value = "ko", value_delimiter = ',')]
    languages: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    interests: Vec<String>,
    /// Local address for host candidates (default: every interface except loopback;
    /// give 127.0.0.1:0 to call a peer on this machine over loopback).
    #[arg(long)]
    udp: Option<std::net::SocketAddr>,
    /// Connect through the TURN relay only ("Hide my IP"): the peer learns no address
    /// of ours but the relay's.
    #[arg(long)]
    relay_only: bool,
    /// Send this peer's packets through the network simulator, as `bench --net` (needs
    /// `--udp 127.0.0.1:0`: the simulator is on loopback), e.g. `up.rate=300k`.
    #[arg(long)]
    net: Option<chingu_cli::netsim::Scenario>,
    /// The device secret to connect with (16–128 of A-Z a-z 0-9 - _; default: a fresh
    /// one). Friends are devices: run again with the same id to be the same friend.
    #[arg(long)]
    device_id: Option<String>,
}

impl PeerArgs {
    fn setup(self) -> chingu_cli::peer::PeerSetup {
        chingu_cli::peer::PeerSetup {
            server: self.server,
            nickname: self.nickname,
            languages: self.languages,
            interests: self.interests,
            udp_addr: self.udp,
            relay_only: self.relay_only,
            net: self.net,
            device_id: self.device_id,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join the queue with synthetic video and a tone, call whoever comes, print one JSON
    /// stats line per second and a summary; exit 0 only if media flowed both ways.
    Bot {
        #[command(flatten)]
        peer: PeerArgs,
        /// Seconds to stay in the call.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds to wait for a partner.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 480)]
        height: u32,
        #[arg(long, default_value_t = 440.0)]
        tone: f64,
        /// Send this `.y4m` file (4:2:0, looped at its frame rate, barcode-stamped)
        /// instead of the synthetic pattern; `--width`/`--height` are not used.
        #[arg(long)]
        video_file: Option<std::path::PathBuf>,
        /// Chat messages to send once the peer's control channel is up (repeatable);
        /// the peer's messages are printed and listed in the summary.
        #[arg(long)]
        chat: Vec<String>,
        /// Use the system's default microphone and speaker (with echo cancellation,
        /// noise suppression and gain control, as the app) instead of a tone and no
        /// playback.
        #[arg(long)]
        devices: bool,
        /// Ask to be friends with whoever the bot is matched with (a friendship needs
        /// both sides to ask).
        #[arg(long)]
        add_friend: bool,
        /// Instead of searching, ring the friend with this nickname once they are online
        /// (needs `--device-id` of a device that has friends).
        #[arg(long, value_name = "NICKNAME")]
        call_friend: Option<String>,
        /// Instead of searching, wait for a friend to ring and accept.
        #[arg(long)]
        answer_calls: bool,
        /// JSON lines instead of a readable summary.
        #[arg(long)]
        json: bool,
    },
    /// Wait in the queue and send back what is received (video, audio and chat), call
    /// after call.
    Echo {
        #[command(flatten)]
        peer: PeerArgs,
        /// Stop after this many calls (default: never).
        #[arg(long)]
        calls: Option<u64>,
    },
    /// Two peers and a server in this process over loopback: setup time, latency, CPU
    /// and bitrate at 640x480 and 1280x720, 30 fps. One JSON object per size.
    Bench {
        /// Seconds to measure each size.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Sizes to run, e.g. 640x480,1280x720.
        #[arg(long, default_value = "640x480,1280x720", value_delimiter = ',')]
        sizes: Vec<String>,
        /// Compact JSON (one object per line).
        #[arg(long)]
        json: bool,
        /// Send peer A's packets through the network simulator: a preset (clean, loss5,
        /// loss20, loss40, burst, cap1m, cap500k, step, jitter, farloss) and/or settings such as
        /// `loss=20%,up.rate=1M,delay=50ms,seed=7` (see netsim/scenario.rs). Repeat for
        /// several; `all` runs every preset.
        #[arg(long)]
        net: Vec<String>,
        /// Also write the scenarios as a Markdown table to this file.
        #[arg(long)]
        table: Option<std::path::PathBuf>,
        /// Both peers send this `.y4m` file (4:2:0, looped at its frame rate) instead of
        /// the synthetic pattern, at its size (`--sizes` is not used); each received
        /// picture is compared with its source frame (`psnrYDb`).
        #[arg(long)]
        video_file: Option<std::path::PathBuf>,
        /// Both peers' tones come in talkspurts, a second on and a second off, as
        /// speakers in a conversation (what DTX saves is measured with it).
        #[arg(long)]
        talk: bool,
    },
    /// libwebrtc's figures for the call `bench` makes (640x480, 30 fps, 1 Mbit/s video
    /// ceiling, both ways), from two peer connections in headless Chromium over this
    /// host's network; one JSON object.
    Reference {
        /// Seconds to measure.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// The browser (default: `CHINGU_CHROMIUM`, else chromium on the PATH).
        #[arg(long)]
        chromium: Option<std::path::PathBuf>,
    },
    /// Chingu's call and libwebrtc's in the same conditions, one after the other: a
    /// network namespace per condition whose UDP crosses `shape` (needs root and
    /// Chromium). One JSON object per stack and run.
    Beside {
        /// A scenario as for `bench --net`, the same both ways (`rate=1M`, not
        /// `up.rate=1M`); repeat for several.
        #[arg(long, default_values = ["clean", "loss5", "loss20", "loss40"])]
        net: Vec<String>,
        /// Calls per stack and condition.
        #[arg(long, default_value_t = 1)]
        runs: u32,
        /// Seconds to measure each call.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// The browser (default: `CHINGU_CHROMIUM`, else chromium on the PATH).
        #[arg(long)]
        chromium: Option<std::path::PathBuf>,
        /// Also write the runs as a Markdown table to this file.
        #[arg(long)]
        table: Option<std::path::PathBuf>,
    },
    /// The kernel's UDP through the network simulator's links, in this network namespace:
    /// binds netfilter queue N (where an iptables `-j NFQUEUE` rule sends packets) and
    /// holds or drops each by its flow's link until stdin closes; then prints what it
    /// did (one JSON object). Needs root; `beside` runs it.
    Shape {
        /// A scenario as for `bench --net`, the same both ways.
        #[arg(long)]
        net: String,
        #[arg(long, default_value_t = 0)]
        queue_num: u16,
    },
    /// The microphone's processing stage (echo cancellation, noise suppression, gain
    /// control) in a simulated room: one JSON object per echo delay (needs espeak-ng).
    AudioBench {
        /// Echo delays to run, ms.
        #[arg(long, value_delimiter = ',', default_values_t = chingu_cli::audio_bench::DELAYS_MS.to_vec())]
        delays: Vec<u64>,
        /// How much faster the microphone's clock runs than the speaker's, ppm.
        #[arg(long, default_value_t = 100.0)]
        drift_ppm: f64,
        /// Which parts run: all (the app's default), echo (echo cancellation only), off;
        /// with `--features webrtc-legacy`, webrtc-legacy and webrtc-legacy-echo (the C++
        /// WebRTC audio processing, for comparison).
        #[arg(long, default_value = "all")]
        stage: String,
        /// Compact JSON (one object per line).
        #[arg(long)]
        json: bool,
        /// Also write the figures as a Markdown table to this file.
        #[arg(long)]
        table: Option<std::path::PathBuf>,
    },
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
    /// Write friendships for `load`'s simulated clients into a server's data directory
    /// (before the server starts): each of `--clients` gets `--friends` friends.
    SeedFriends {
        /// The server's data directory (its `chingu.sqlite3` is created if missing).
        #[arg(long)]
        data_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 50)]
        friends: usize,
    },
    /// Attack a server from loopback addresses (127.0.3.x) staying within its limits,
    /// while honest pairs (127.0.2.x) match and relay and /healthz is polled; reports
    /// what the honest side saw.
    Attack {
        /// WebSocket URL of the server, e.g. ws://127.0.0.1:7878/v1/ws (loopback only).
        #[arg(long)]
        server: String,
        #[arg(long, value_enum)]
        kind: chingu_cli::attack::Attack,
        /// Seconds to attack and measure.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Print one JSON object instead of a pretty one.
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
    // Many sockets for load tests; a failure only lowers what `load` can open.
    let _ = chingu_server::fd_limit::raise();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Bot {
            peer,
            duration,
            wait,
            width,
            height,
            tone,
            video_file,
            chat,
            devices,
            add_friend,
            call_friend,
            answer_calls,
            json,
        } => {
            let mut setup = peer.setup();
            if setup.nickname.is_empty() {
                setup.nickname = "chingu-bot".into();
            }
            let config = chingu_cli::peer::BotConfig {
                setup,
                width,
                height,
                tone_hz: tone,
                video_file,
                duration: Duration::from_secs(duration),
                wait: Duration::from_secs(wait),
                chat,
                devices,
                add_friend,
                call_friend,
                answer_calls,
            };
            let summary = runtime.block_on(chingu_cli::peer::bot(config, |line| {
                if json {
                    print_line(&line);
                }
            }))?;
            if json {
                print_line(&serde_json::to_string(&summary)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            }
            if !summary.ok {
                anyhow::bail!("media did not flow both ways");
            }
        }
        Command::Echo { peer, calls } => {
            runtime.block_on(chingu_cli::peer::echo(peer.setup(), calls, |line| {
                print_line(&line)
            }))?;
        }
        Command::Bench {
            duration,
            sizes,
            json,
            net,
            table,
            video_file,
            talk,
        } => {
            let sources = chingu_cli::bench::Sources {
                video_file: video_file.as_deref(),
                talk,
            };
            let mut nets = Vec::new();
            for spec in &net {
                if spec == "all" {
                    for (name, ..) in chingu_cli::netsim::scenario::PRESETS {
                        nets.push(name.parse()?);
                    }
                } else {
                    nets.push(spec.parse::<chingu_cli::netsim::Scenario>()?);
                }
            }
            let sizes = sizes
                .iter()
                .map(|s| {
                    let (w, h) = s
                        .split_once('x')
                        .ok_or_else(|| anyhow::anyhow!("size {s:?} is not WIDTHxHEIGHT"))?;
                    Ok((w.parse()?, h.parse()?))
                })
                .collect::<anyhow::Result<Vec<(u32, u32)>>>()?;
            let print = |value: &serde_json::Value| -> anyhow::Result<()> {
                if json {
                    println!("{}", serde_json::to_string(value)?);
                } else {
                    println!("{}", serde_json::to_string_pretty(value)?);
                }
                Ok(())
            };
            if nets.is_empty() {
                let results = runtime.block_on(chingu_cli::bench::run_with(
                    &sizes,
                    Duration::from_secs(duration),
                    &[],
                    sources,
                ))?;
                for r in results {
                    print(&serde_json::to_value(&r)?)?;
                }
            }
            // One scenario at a time: a call that does not connect is a row of the table
            // (with its error), not the end of the run.
            let mut failed = 0;
            let mut rows = Vec::new();
            for net in &nets {
                let outcome = runtime.block_on(chingu_cli::bench::run_with(
                    &sizes,
                    Duration::from_secs(duration),
                    std::slice::from_ref(net),
                    sources,
                ));
                match outcome {
                    Ok(results) => {
                        for r in results {
                            print(&serde_json::to_value(&r)?)?;
                            rows.push(Ok(r));
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        print(&serde_json::json!({
                            "net": net.name,
                            "error": format!("{e:#}"),
                        }))?;
                        rows.push(Err((net.name.clone(), format!("{e:#}"))));
                    }
                }
            }
            if let Some(path) = &table {
                std::fs::write(path, chingu_cli::bench::markdown(&rows))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if failed > 0 && failed == nets.len() {
                anyhow::bail!("no scenario could be measured");
            }
        }
        Command::Reference { duration, chromium } => {
            let chromium = chromium
                .or_else(chingu_cli::reference::find_chromium)
                .context("no Chromium: install it (apt-get install chromium) or pass --chromium")?;
            let result = chingu_cli::reference::run(&chromium, Duration::from_secs(duration))?;
            println!("{}", serde_json::to_string(&result)?);
        }
        Command::Shape { net, queue_num } => chingu_cli::beside::shape(&net, queue_num)?,
        Command::Beside {
            net,
            runs,
            duration,
            chromium,
            table,
        } => {
            let chromium = chromium
                .or_else(chingu_cli::reference::find_chromium)
                .context("no Chromium: install it (apt-get install chromium) or pass --chromium")?;
            let nets = net
                .iter()
                .map(|n| n.parse())
                .collect::<Result<Vec<chingu_cli::netsim::Scenario>, _>>()?;
            let all = chingu_cli::beside::run(
                &nets,
                runs,
                Duration::from_secs(duration),
                &chromium,
                |run| match serde_json::to_string(run) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("chingu-cli: {e}"),
                },
            )?;
            if let Some(path) = &table {
                std::fs::write(path, chingu_cli::beside::markdown(&all))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if all
                .iter()
                .all(|r| matches!(r.outcome, chingu_cli::beside::Outcome::Failed(_)))
            {
                anyhow::bail!("no call could be measured");
            }
        }
        Command::AudioBench {
            delays,
            drift_ppm,
            stage,
            json,
            table,
        } => {
            use chingu_cli::audio_bench::Stage;
            use chingu_media::processing::ProcessingSettings;
            let echo_only = ProcessingSettings {
                echo_cancellation: true,
                ..ProcessingSettings::OFF
            };
            let settings = match stage.as_str() {
                "all" => Stage::Chingu(ProcessingSettings::default()),
                "echo" => Stage::Chingu(echo_only),
                "off" => Stage::Chingu(ProcessingSettings::OFF),
                #[cfg(feature = "webrtc-legacy")]
                "webrtc-legacy" => Stage::WebrtcLegacy(ProcessingSettings::default()),
                #[cfg(feature = "webrtc-legacy")]
                "webrtc-legacy-echo" => Stage::WebrtcLegacy(echo_only),
                other => anyhow::bail!("--stage {other:?}: expected all, echo or off"),
            };
            let talkers = chingu_cli::audio_bench::talkers()?;
            let mut rows = Vec::new();
            for delay in delays {
                let figures = chingu_cli::audio_bench::measure(
                    &talkers,
                    Duration::from_millis(delay),
                    drift_ppm,
                    settings,
                );
                if json {
                    print_line(&serde_json::to_string(&figures)?);
                } else {
                    println!("{}", serde_json::to_string_pretty(&figures)?);
                }
                rows.push(figures);
            }
            if let Some(path) = &table {
                chingu_cli::audio_bench::write_table(path, &rows)?;
            }
        }
        Command::SeedFriends {
            data_dir,
            clients,
            friends,
        } => {
            let written = chingu_cli::load::seed_friends(&data_dir, clients, friends)?;
            eprintln!("{written} friendships written to {}", data_dir.display());
        }
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
        Command::Attack {
            server,
            kind,
            duration,
            json,
        } => {
            let config = chingu_cli::attack::AttackConfig {
                server,
                attack: kind,
                duration: Duration::from_secs(duration),
            };
            let report = runtime.block_on(chingu_cli::attack::run(config))?;
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

/// One JSON line in one write, so that lines from processes sharing the output (tests,
/// scripts) never interleave (a pipe keeps writes of up to 4 KiB whole); `println!`
/// writes a long line in pieces.
fn print_line(line: &str) {
    use std::io::Write;
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
