//! The `peakguard` binary: parses the command line, sets up logging and hands
//! over to the library.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use peakguard::bench;
use peakguard::cli::{Cli, Command, LogFormat, RulesAction};
use peakguard::codec::SchemaStore;
use peakguard::config::Config;
use peakguard::demo::{self, DemoOptions};
use peakguard::report;
use peakguard::runtime::{self, RunOptions};
use peakguard::source::WorkerOptions;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    // Colours only on a terminal: piped logs must stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn stop_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

fn load_store(cfg: &Config) -> anyhow::Result<Arc<SchemaStore>> {
    Ok(Arc::new(match &cfg.schemas.dir {
        Some(dir) => SchemaStore::load(dir)?,
        None => SchemaStore::embedded(),
    }))
}

/// Errors are printed as one chain of causes (`error: ...: ...`), never as a
/// backtrace: they are for the operator, who needs the field and the fix.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let shutdown = CancellationToken::new();
    match cli.command {
        Command::Check { config } => {
            let cfg = Config::load(&config)?;
            let store = load_store(&cfg)?;
            println!("{} is valid.\n{:#?}\nschemas: {:?}", config.display(), cfg, store);
        }
        Command::Rules { action: RulesAction::Check { file, config } } => {
            let base = match config {
                Some(path) => Config::load(&path)?,
                None => Config::with_defaults(),
            };
            let cfg = base.with_rules_file(&file)?;
            print!("{}", report::rules(&cfg, &file));
        }
        Command::Replay { input, config, tick_every } => {
            let cfg = match config {
                Some(path) => Config::load(&path)?,
                None => Config::with_defaults(),
            };
            let file =
                std::fs::File::open(&input).with_context(|| format!("cannot open --input {}", input.display()))?;
            let report = peakguard::source::replay::replay(std::io::BufReader::new(file), &cfg, tick_every)
                .with_context(|| format!("cannot read {}", input.display()))?;
            print!("{}", report::replay(&report, &cfg));
        }
        Command::Generate { output, brokers, speed, traffic } => {
            let mut generator = peakguard::generator::Generator::new(traffic.generator_config());
            let spike = generator.spike_shop().unwrap_or_default();
            if let Some(brokers) = brokers {
                stop_on_signals(shutdown.clone());
                let store = SchemaStore::embedded();
                let (n, _) = tokio::task::spawn_blocking(move || {
                    demo::produce(generator, &brokers, &store, speed.max(0.001), &shutdown)
                })
                .await
                .context("the generator thread failed")?;
                println!("produced {n} events (injected spike: {spike})");
                return Ok(());
            }
            let output = output.context("give --output FILE or --brokers HOST:PORT")?;
            let file = std::fs::File::create(&output)
                .with_context(|| format!("cannot create --output {}", output.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let (mut n, mut events) = (0u64, Vec::new());
            while generator.next_second(&mut events) {
                for e in events.drain(..) {
                    use std::io::Write;
                    writeln!(out, "{}", peakguard::codec::json::to_json(&e))?;
                    n += 1;
                }
            }
            std::io::Write::flush(&mut out)?;
            println!("wrote {n} events to {} (injected spike: {spike})", output.display());
        }
        Command::Run { config, exit_when_caught_up } => {
            let cfg = Config::load(&config)?;
            let store = load_store(&cfg)?;
            tracing::info!(config = ?cfg.kafka, "starting");
            stop_on_signals(shutdown.clone());
            let worker = WorkerOptions { exit_when_caught_up, ..WorkerOptions::default() };
            let opts = RunOptions { http: true, reload_from: Some(config.clone()), worker };
            let summary = runtime::run(cfg, store, shutdown, opts, None).await.context("peakguard run failed")?;
            let r = &summary.report;
            println!(
                "stopped: {} workers, {} records, {} folded, {} late, {} undecodable, {} alerts",
                summary.workers,
                r.records,
                r.stats.folded,
                r.stats.late,
                r.decode_errors,
                summary.alerts.len()
            );
        }
        Command::Bench { input, config, traffic, batch, load, broker, brokers, partitions, workers, interleave } => {
            let cfg = match config {
                Some(path) => Config::load(&path)?,
                None => Config::with_defaults(),
            };
            let opts = bench::BenchOptions {
                workload: match input {
                    Some(path) => bench::Workload::File(path),
                    None => bench::Workload::Generator {
                        traffic: traffic.generator_config(),
                        every_shop: !traffic.zipf_only,
                    },
                },
                batch: batch as usize,
                load,
                broker: broker.then_some(brokers),
                partitions,
                workers: workers as usize,
                interleave: interleave as usize,
            };
            let store = load_store(&cfg)?;
            let text = bench::run(opts, cfg, store).await?;
            print!("{text}");
        }
        Command::Demo { duration, traffic, partitions, listen } => {
            let generator = traffic.generator_config();
            stop_on_signals(shutdown.clone());
            println!(
                "peakguard demo: {} shops, simulated {} of Double 11 eve in {}; Ctrl-C to stop early",
                traffic.shops,
                humantime::format_duration(traffic.sim_duration),
                humantime::format_duration(duration)
            );
            let on_listen: runtime::OnListen = Box::new(|addr| println!("metrics: http://{addr}/metrics"));
            let s =
                demo::run(DemoOptions { duration, generator, partitions, listen }, shutdown, Some(on_listen)).await?;
            print!("{}", report::demo(&s));
        }
    }
    Ok(())
}
