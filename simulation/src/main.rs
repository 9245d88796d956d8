//! `stateledger-sim`: runs simulation seeds from the command line (replay one seed with its
//! trace, or sweep thousands). Built only with `RUSTFLAGS="--cfg madsim"`; see
//! docs/SIMULATION.md.

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "stateledger-sim runs only in a madsim build:\n  RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run --release -p stateledger-simulation --bin stateledger-sim -- --help"
    );
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    std::process::exit(sim::main());
}

#[cfg(madsim)]
mod sim {
    use std::time::Duration;

    use stateledger_simulation::batch::{result_line, run_all};
    use stateledger_simulation::{run_seed, SimOptions, Switch};

    const USAGE: &str =
        "usage: stateledger-sim [--seed N | --seeds COUNT [--start FIRST]] [--nodes 3|5|3,5]
                       [--jobs J] [--safety-ms MS] [--liveness-ms MS]
                       [--known-bad SWITCH]... [--trace] [--log FILTER]

  --seed N          run one seed in this process (with --trace: print its trace as it runs)
  --seeds COUNT     run COUNT seeds starting at --start (default 0), each with every --nodes
                    size, each in its own child process
  --nodes           cluster sizes (voters), default 3,5
  --jobs J          seeds run in parallel (default: available cores)
  --known-bad WHAT  re-introduce a known-bad behaviour (the run should fail); repeatable:
                    ack-log-before-sync, sync-marker-ignored, commit-without-quorum,
                    checkpoint-short-of-quorum, lost-state-votes, duplicate-check-skipped,
                    snapshot-install-without-sync, backlink-wrong-predecessor,
                    head-map-not-updated, ledger-time-backwards,
                    leader-resumes-after-restart, ledger-meta-written-first,
                    unsigned-record-accepted
  --log FILTER      node logs to stderr (tracing filter, e.g. info or openraft=debug)
exit status: 0 all passed, 1 some failed, 2 usage";

    struct Args {
        runs: Vec<SimOptions>,
        jobs: usize,
        /// Run in this process (one seed): `--seed`, or `--child` from a batch.
        here: bool,
    }

    fn parse() -> Result<Args, String> {
        let mut args = std::env::args().skip(1);
        let (mut seed, mut count, mut start) = (None, None, 0u64);
        let mut sizes = vec![3usize, 5];
        let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut base = SimOptions::new(0, 3);
        let mut log = None;
        let mut child = false;
        let num = |v: Option<String>, what: &str| -> Result<u64, String> {
            v.ok_or_else(|| format!("{what} needs a value"))?
                .parse()
                .map_err(|_| format!("{what} needs a number"))
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                "--seed" => seed = Some(num(args.next(), "--seed")?),
                "--seeds" => count = Some(num(args.next(), "--seeds")?),
                "--start" => start = num(args.next(), "--start")?,
                "--jobs" => jobs = num(args.next(), "--jobs")? as usize,
                "--safety-ms" => {
                    base.safety = Duration::from_millis(num(args.next(), "--safety-ms")?)
                }
                "--liveness-ms" => {
                    base.liveness_bound = Duration::from_millis(num(args.next(), "--liveness-ms")?)
                }
                "--nodes" => {
                    sizes = args
                        .next()
                        .ok_or("--nodes needs a value")?
                        .split(',')
                        .map(|n| match n {
                            "3" => Ok(3),
                            "5" => Ok(5),
                            _ => Err(format!("--nodes takes 3, 5 or 3,5, not {n}")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--known-bad" => {
                    let name = args.next().ok_or("--known-bad needs a switch name")?;
                    let switch = Switch::parse(&name).ok_or_else(|| {
                        format!(
                            "unknown --known-bad {name:?}; one of {}",
                            Switch::ALL.map(|s| s.name()).join(", ")
                        )
                    })?;
                    base.known_bad = base.known_bad.with(switch);
                }
                "--trace" => base.echo_trace = true,
                "--child" => child = true,
                "--log" => log = Some(args.next().ok_or("--log needs a filter")?),
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if let Some(filter) = log {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .init();
        }
        let seeds: Vec<u64> = match (seed, count) {
            (Some(s), None) => vec![s],
            (None, Some(c)) => (start..start + c).collect(),
            (None, None) => return Err("give --seed or --seeds".into()),
            (Some(_), Some(_)) => return Err("give --seed or --seeds, not both".into()),
        };
        let runs = seeds
            .iter()
            .flat_map(|s| {
                let base = base.clone();
                sizes.iter().map(move |n| SimOptions {
                    seed: *s,
                    nodes: *n,
                    ..base.clone()
                })
            })
            .collect::<Vec<_>>();
        let here = seed.is_some() && sizes.len() == 1;
        if child && !here {
            return Err("--child runs exactly one seed and one size".into());
        }
        Ok(Args { runs, jobs, here })
    }

    pub fn main() -> i32 {
        let args = match parse() {
            Ok(a) => a,
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("stateledger-sim: {e}");
                }
                eprintln!("{USAGE}");
                return 2;
            }
        };
        if args.here {
            let outcome = run_seed(&args.runs[0]);
            println!("{}", outcome.summary());
            if let Some(report) = outcome.failure_report() {
                println!("\n{report}");
            }
            println!("{}", result_line(&outcome));
            return i32::from(!outcome.passed());
        }
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("stateledger-sim: cannot find its own executable: {e}");
                return 2;
            }
        };
        let total = args.runs.len();
        let started = std::time::Instant::now();
        let finished = run_all(&exe, args.runs, args.jobs, |f| println!("{}", f.summary));
        let failed: Vec<_> = finished.iter().filter(|f| !f.passed).collect();
        for f in &failed {
            eprintln!("\n{}", f.failure_text());
        }
        println!(
            "{} of {total} runs passed in {:.1}s",
            total - failed.len(),
            started.elapsed().as_secs_f64()
        );
        if !failed.is_empty() {
            println!(
                "failed: {}",
                failed
                    .iter()
                    .map(|f| format!("seed {} ({} nodes)", f.options.seed, f.options.nodes))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        i32::from(!failed.is_empty())
    }
}
