//! The `peakguard` binary: parses the command line, sets up logging and hands
//! over to the library.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use peakguard::cli::{Cli, Command, LogFormat};
use peakguard::codec::SchemaStore;
use peakguard::config::Config;
use peakguard::demo::{self, DemoOptions};
use peakguard::generator::GeneratorConfig;
use peakguard::rules::AlertStatus;
use peakguard::runtime::{self, RunOptions};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let shutdown = CancellationToken::new();
    match cli.command {
        Command::Check { config } => {
            let cfg = Config::load(&config)?;
            let store = load_store(&cfg)?;
            println!("{} is valid.\n{:#?}\nschemas: {:?}", config.display(), cfg, store);
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
            print_replay(&report, &cfg);
        }
        Command::Generate { output, sim_duration, shops, orders_per_sec, seed } => {
            anyhow::ensure!(shops > 0, "--shops must be at least 1");
            let mut generator = peakguard::generator::Generator::new(GeneratorConfig {
                shops,
                duration_ms: sim_duration.as_millis() as i64,
                base_orders_per_sec: orders_per_sec,
                seed,
                ..GeneratorConfig::default()
            });
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
            println!(
                "wrote {n} events to {} (injected spike: {})",
                output.display(),
                generator.spike_shop().unwrap_or_default()
            );
        }
        Command::Run { config } => {
            let cfg = Config::load(&config)?;
            let store = load_store(&cfg)?;
            tracing::info!(config = ?cfg.kafka, "starting");
            stop_on_signals(shutdown.clone());
            let summary = runtime::run(cfg, store, shutdown, RunOptions { http: true, ..Default::default() }, None)
                .await
                .context("peakguard run failed")?;
            let r = &summary.report;
            println!(
                "stopped: {} records, {} folded, {} late, {} undecodable, {} alerts",
                r.records,
                r.stats.folded,
                r.stats.late,
                r.decode_errors,
                summary.alerts.len()
            );
        }
        Command::Demo { duration, sim_duration, shops, orders_per_sec, partitions, listen, seed } => {
            anyhow::ensure!(shops > 0, "--shops must be at least 1");
            anyhow::ensure!(partitions > 0, "--partitions must be at least 1");
            let generator = GeneratorConfig {
                shops,
                duration_ms: sim_duration.as_millis() as i64,
                base_orders_per_sec: orders_per_sec,
                seed,
                ..GeneratorConfig::default()
            };
            stop_on_signals(shutdown.clone());
            println!(
                "peakguard demo: {shops} shops, simulated {} of Double 11 eve in {}; Ctrl-C to stop early",
                humantime::format_duration(sim_duration),
                humantime::format_duration(duration)
            );
            let on_listen: runtime::OnListen = Box::new(|addr| println!("metrics: http://{addr}/metrics"));
            let s =
                demo::run(DemoOptions { duration, generator, partitions, listen }, shutdown, Some(on_listen)).await?;
            print_demo_summary(&s);
        }
    }
    Ok(())
}

fn fmt_time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

fn print_replay(r: &peakguard::source::replay::ReplayReport, cfg: &Config) {
    println!("alert timeline (event time of the window end):");
    for a in &r.alerts {
        println!(
            "  {}  {:<8}  {}  shop={}  {} {}/{} = {:.1}% (bound {:.1}%, threshold {:.1}%)",
            fmt_time(a.window_end),
            a.status.as_str(),
            a.rule,
            a.shop_id,
            a.window,
            a.numerator,
            a.denominator,
            a.rate * 100.0,
            a.wilson_lower_bound * 100.0,
            a.threshold * 100.0
        );
    }
    println!("per rule:");
    for rule in &cfg.rules {
        let of_rule: Vec<_> = r.alerts.iter().filter(|a| a.rule == rule.name).collect();
        let fired = of_rule.iter().filter(|a| a.status == AlertStatus::Firing).count();
        let resolved = of_rule.len() - fired;
        let mut shops: Vec<&str> = of_rule.iter().map(|a| a.shop_id.as_str()).collect();
        shops.sort();
        shops.dedup();
        let shown: Vec<&str> = shops.iter().take(10).copied().collect();
        println!(
            "  {} ({} {} {} > {}): fired {fired}, resolved {resolved}, shops {}{}",
            rule.name,
            rule.metric,
            rule.window,
            rule.severity.as_str(),
            rule.threshold,
            shown.join(", "),
            if shops.len() > 10 { format!(" and {} more", shops.len() - 10) } else { String::new() }
        );
    }
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let bad: u64 = r.errors.values().sum();
    println!(
        "replayed {} lines: {} events ({} folded, {} late, {} duplicate, {} future), {bad} undecodable, in {:.1}s ({:.0} events/s)",
        r.lines,
        r.events,
        r.stats.folded,
        r.stats.late,
        r.stats.duplicate,
        r.stats.future,
        secs,
        r.events as f64 / secs
    );
    for (reason, n) in &r.errors {
        println!("  undecodable: {reason} x{n}");
    }
    for (line, e) in &r.first_errors {
        println!("  line {line}: {e}");
    }
}

fn print_demo_summary(s: &demo::DemoSummary) {
    let r = &s.run.report;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    println!("\n=== peakguard demo summary ===");
    println!("simulated time   {} .. {}", fmt_time(s.sim_start), fmt_time(s.sim_end));
    println!("events produced  {}", s.produced);
    println!(
        "events processed {} in {:.1}s = {:.0} events/s, paced by the generator ({} folded, {} ignored kinds, {} late, {} undecodable)",
        r.records,
        secs,
        r.records as f64 / secs,
        r.stats.folded,
        r.stats.ignored,
        r.stats.late,
        r.decode_errors
    );
    if !r.latency_ms.is_empty() {
        println!(
            "produce->fold    p50 {} ms, p99 {} ms, max {} ms",
            r.latency_ms.value_at_quantile(0.5),
            r.latency_ms.value_at_quantile(0.99),
            r.latency_ms.max()
        );
    }
    println!("shops held       {}", r.shops);
    let firing: Vec<_> = s.run.alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    println!("alerts fired     {}", firing.len());
    for a in &firing {
        println!(
            "  {} shop={} {} {}/{} = {:.1}% (Wilson lower bound {:.1}% > {:.1}%) at {}",
            a.rule,
            a.shop_id,
            a.window,
            a.numerator,
            a.denominator,
            a.rate * 100.0,
            a.wilson_lower_bound * 100.0,
            a.threshold * 100.0,
            fmt_time(a.window_end)
        );
    }
    if let Some(spike) = &s.spike_shop {
        let caught = firing.iter().any(|a| &a.shop_id == spike);
        let others = firing.iter().filter(|a| &a.shop_id != spike).count();
        println!("other shops      {others} alert(s) for shops without an injected incident");
        println!(
            "injected spike   {spike}: {}",
            if caught { "detected" } else { "NOT detected (demo too short? try --duration 60s)" }
        );
    }
}
