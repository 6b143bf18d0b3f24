//! `simulation`: runs seeds and reports. `--seeds N` for many, `--seed N` to replay one.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use simulation::{run, SimConfig};

/// Fault simulations of whole clusters, checked for linearizability and invariants.
#[derive(Parser, Debug)]
#[command(name = "simulation")]
struct Args {
    /// Replay this one seed (prints its schedule and history summary).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run this many seeds, starting at --first.
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// The first seed of --seeds.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Cluster size; by default one seed in three runs 5 nodes, the others 3.
    #[arg(long)]
    nodes: Option<u64>,
    /// Workload clients.
    #[arg(long)]
    clients: Option<usize>,
    /// Operations per client at most.
    #[arg(long)]
    ops: Option<usize>,
    /// Length of the fault phase, in simulated milliseconds.
    #[arg(long)]
    fault_ms: Option<u64>,
    /// Switch on a deliberate bug in every node: stale-read, unchecked-stock (comma-separated).
    #[arg(long, default_value = "")]
    inject: String,
    /// Run each seed this many times and report how many runs reproduce the first exactly.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Keep going after a failing seed.
    #[arg(long)]
    keep_going: bool,
    /// Log the nodes' tracing output (RUST_LOG filters it).
    #[arg(long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.verbose {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let inject = match args.inject.parse() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("--inject: {e}");
            return ExitCode::from(2);
        }
    };
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first..args.first + args.seeds).collect(),
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (0, Vec::new());
    for (i, &seed) in seeds.iter().enumerate() {
        let mut cfg = SimConfig::for_seed(seed);
        cfg.inject = inject;
        if let Some(n) = args.nodes {
            cfg.nodes = n;
        }
        if let Some(c) = args.clients {
            cfg.clients = c;
        }
        if let Some(o) = args.ops {
            cfg.ops_per_client = o;
        }
        if let Some(f) = args.fault_ms {
            cfg.fault_ms = f;
        }
        let mut fingerprints = Vec::new();
        let mut failed_here = false;
        for _ in 0..args.repeat.max(1) {
            let outcome = match run(cfg.clone()) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("seed {seed}: could not run: {e:#}");
                    return ExitCode::from(2);
                }
            };
            fingerprints.push((outcome.fingerprint(), outcome.passed()));
            println!(
                "seed {seed} ({}/{}, {} nodes): {}  ops {} (unknown {}, LOCAL reads {}), faults {}, sim {:.1} s, wall {:.1} s",
                i + 1,
                seeds.len(),
                cfg.nodes,
                if outcome.passed() { "ok" } else { "VIOLATION" },
                outcome.ops.len(),
                outcome.unknown,
                outcome.local_reads,
                outcome.events.len(),
                outcome.sim.as_secs_f64(),
                outcome.wall.as_secs_f64(),
            );
            if args.seed.is_some() && outcome.passed() && args.repeat <= 1 {
                println!("fault schedule:");
                for p in &outcome.schedule {
                    println!("  {p}");
                }
                println!("what fired:");
                for e in &outcome.events {
                    println!("  {e}");
                }
            }
            if !outcome.passed() {
                failed_here = true;
                println!("{}", outcome.report());
            }
        }
        if args.repeat > 1 {
            let same = fingerprints.iter().filter(|f| **f == fingerprints[0]).count();
            let verdicts = fingerprints.iter().filter(|f| f.1 == fingerprints[0].1).count();
            println!(
                "seed {seed}: {same}/{} replays reproduced the first history exactly; {verdicts}/{} the verdict",
                fingerprints.len(),
                fingerprints.len()
            );
        }
        if failed_here {
            failed.push(cfg.replay_command());
            if !args.keep_going {
                break;
            }
        } else {
            passed += 1;
        }
    }
    println!(
        "{passed} seed(s) passed, {} failed, in {:.1} s{}",
        failed.len(),
        started.elapsed().as_secs_f64(),
        if inject.any() { format!(" (injected: {inject})") } else { String::new() }
    );
    for cmd in &failed {
        println!("replay: {cmd}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
