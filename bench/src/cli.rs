//! Command-line parsing (by hand, no dependencies).

use crate::error::{BenchError, Result};
use crate::workload::{Scale, Workload};

/// The usage text printed by `--help` and after a bad command line.
pub const USAGE: &str = "\
usage: matrx-orm-bench [--workload <W1|W2|W3|W4|W5|all>] [--strategy <name|all>]
                       [--runs <N>] [--json] [--scale <full|tiny|x10>]
                       [--pgbouncer <N>] [--orders <N>]

  --workload  workload(s) to run, comma-separated or `all` (default: all)
  --strategy  strategy name(s), comma-separated or `all` (default: all);
              the handwritten baseline always runs first for each workload
  --runs      timed runs per (workload, strategy), after one warm-up run and
              one query-counting run (default: 5)
  --json      one JSON object per line instead of a table
  --pgbouncer run every strategy through a PgBouncer the runner starts in
              transaction pooling mode with N server connections; the ORM
              uses StatementMode::Unnamed, the handwritten baseline unnamed
              statements with the parameter types it knows
  --scale     `full` (WORKLOADS.md dataset, schema matrx_bench) or `tiny`
              (1/20 of the rows, schema matrx_bench_tiny) or `x10` (10x the
              rows, schema matrx_bench_x10) (default: full)
  --orders    W1 loads the N orders with the smallest ids instead of 1,000
              (up to 20,000 at full scale, 200,000 at x10): the scaling
              table; checksums are then computed by the database

The server is DATABASE_URL, else postgres://root@localhost:5432/test, else a
throwaway cluster started from the machine's PostgreSQL binaries.";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the usage text.
    Help,
    /// The normal run: orchestrate child processes and print results.
    Run(RunArgs),
    /// The hidden `--child <workload> <strategy>` mode: measure one pair and
    /// print one JSON line.
    Child(ChildArgs),
}

/// Arguments of a normal run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Selected workloads, in order, without duplicates.
    pub workloads: Vec<Workload>,
    /// Selected strategy names, in registry order, without duplicates.
    pub strategies: Vec<String>,
    /// Selected names of planned strategies that are not registered yet
    /// (left out of the output).
    pub not_implemented: Vec<String>,
    /// Number of timed runs.
    pub runs: usize,
    /// JSON lines instead of a table.
    pub json: bool,
    /// Through a PgBouncer in transaction mode with this many server connections.
    pub pgbouncer: Option<u32>,
    /// Dataset scale.
    pub scale: Scale,
    /// W1's number of orders, when not the workload's 1,000.
    pub orders: Option<i64>,
}

/// Arguments of the child mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildArgs {
    /// The workload to measure.
    pub workload: Workload,
    /// The strategy to measure.
    pub strategy: String,
    /// Number of timed runs.
    pub runs: usize,
    /// Dataset scale.
    pub scale: Scale,
    /// W1's number of orders, when not the workload's 1,000.
    pub orders: Option<i64>,
}

/// Default number of timed runs.
pub const DEFAULT_RUNS: usize = 5;

fn usage(msg: impl std::fmt::Display) -> BenchError {
    BenchError::Usage(format!("{msg}\n\n{USAGE}"))
}

/// Parses the arguments (without the program name).  `known_strategies` are
/// the registered strategy names, in registry order; `planned` are names
/// accepted by `--strategy` although not registered (see
/// [`crate::registry::PLANNED`]).
pub fn parse(args: &[String], known_strategies: &[&str], planned: &[&str]) -> Result<Command> {
    let mut workload_arg = "all".to_string();
    let mut strategy_arg = "all".to_string();
    let mut runs = DEFAULT_RUNS;
    let mut json = false;
    let mut pgbouncer = None;
    let mut scale = Scale::Full;
    let mut orders = None;
    let mut child: Option<(String, String)> = None;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage(format!("{what} needs a value"))),
            }
        };
        match name {
            "-h" | "--help" => return Ok(Command::Help),
            "--workload" => workload_arg = value("--workload")?,
            "--strategy" => strategy_arg = value("--strategy")?,
            "--runs" => {
                let v = value("--runs")?;
                runs = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(usage(format!(
                            "--runs must be a positive integer, got {v:?}"
                        )))
                    }
                };
            }
            "--scale" => {
                let v = value("--scale")?;
                scale = Scale::parse(&v).ok_or_else(|| {
                    usage(format!("--scale must be full, tiny or x10, got {v:?}"))
                })?;
            }
            "--orders" => {
                let v = value("--orders")?;
                orders = match v.parse::<i64>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => {
                        return Err(usage(format!(
                            "--orders must be a positive integer, got {v:?}"
                        )))
                    }
                };
            }
            "--json" if inline.is_none() => json = true,
            "--pgbouncer" => {
                let v = value("--pgbouncer")?;
                pgbouncer = match v.parse::<u32>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => {
                        return Err(usage(format!(
                            "--pgbouncer must be a positive integer, got {v:?}"
                        )))
                    }
                };
            }
            "--child" if inline.is_none() => {
                let w = it.next().cloned();
                let s = it.next().cloned();
                match (w, s) {
                    (Some(w), Some(s)) => child = Some((w, s)),
                    _ => return Err(usage("--child needs <workload> <strategy>")),
                }
            }
            _ => return Err(usage(format!("unknown argument {arg:?}"))),
        }
    }

    if let Some((w, s)) = child {
        let workload =
            Workload::parse(&w).ok_or_else(|| usage(format!("unknown workload {w:?}")))?;
        if !known_strategies.contains(&s.as_str()) {
            return Err(unknown_strategy(&s, known_strategies));
        }
        return Ok(Command::Child(ChildArgs {
            workload,
            strategy: s,
            runs,
            scale,
            orders,
        }));
    }

    let (strategies, not_implemented) = parse_strategies(&strategy_arg, known_strategies, planned)?;
    Ok(Command::Run(RunArgs {
        workloads: parse_workloads(&workload_arg)?,
        strategies,
        not_implemented,
        runs,
        json,
        scale,
        pgbouncer,
        orders,
    }))
}

fn unknown_strategy(name: &str, known: &[&str]) -> BenchError {
    usage(format!(
        "unknown strategy {name:?} (available: {}, or all)",
        known.join(", ")
    ))
}

fn parse_workloads(arg: &str) -> Result<Vec<Workload>> {
    if arg.eq_ignore_ascii_case("all") {
        return Ok(Workload::ALL.to_vec());
    }
    let mut out = Vec::new();
    for part in arg.split(',').map(str::trim) {
        let w = Workload::parse(part).ok_or_else(|| {
            usage(format!(
                "unknown workload {part:?} (expected W1, W2, W3, W4, W5 or all)"
            ))
        })?;
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Returns (registered names in registry order, planned but unregistered
/// names), both without duplicates.
fn parse_strategies(
    arg: &str,
    known: &[&str],
    planned: &[&str],
) -> Result<(Vec<String>, Vec<String>)> {
    if arg == "all" {
        return Ok((known.iter().map(|s| s.to_string()).collect(), Vec::new()));
    }
    let mut selected = Vec::new();
    let mut not_implemented: Vec<String> = Vec::new();
    for part in arg.split(',').map(str::trim) {
        if known.contains(&part) {
            selected.push(part);
        } else if planned.contains(&part) {
            if !not_implemented.iter().any(|n| n == part) {
                not_implemented.push(part.to_string());
            }
        } else {
            return Err(unknown_strategy(part, known));
        }
    }
    let selected = known
        .iter()
        .filter(|k| selected.contains(k))
        .map(|s| s.to_string())
        .collect();
    Ok((selected, not_implemented))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["handwritten", "prefetch"];
    const PLANNED: &[&str] = &["prefetch", "dataloader"];

    fn p(args: &[&str]) -> Result<Command> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args, KNOWN, PLANNED)
    }

    fn run(args: &[&str]) -> RunArgs {
        match p(args) {
            Ok(Command::Run(r)) => r,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let r = run(&[]);
        assert_eq!(r.workloads, Workload::ALL.to_vec());
        assert_eq!(r.strategies, vec!["handwritten", "prefetch"]);
        assert_eq!(r.runs, 5);
        assert!(!r.json);
        assert_eq!(r.scale, Scale::Full);
    }

    #[test]
    fn full_command_line() {
        let r = run(&[
            "--workload",
            "w2",
            "--strategy",
            "handwritten",
            "--runs",
            "3",
            "--json",
            "--scale",
            "tiny",
        ]);
        assert_eq!(r.workloads, vec![Workload::W2]);
        assert_eq!(r.strategies, vec!["handwritten"]);
        assert_eq!(r.runs, 3);
        assert!(r.json);
        assert_eq!(r.scale, Scale::Tiny);
    }

    #[test]
    fn equals_form_and_lists() {
        let r = run(&[
            "--workload=W3,W1,W3",
            "--strategy=prefetch,handwritten",
            "--runs=1",
        ]);
        assert_eq!(r.workloads, vec![Workload::W1, Workload::W3]);
        assert_eq!(r.strategies, vec!["handwritten", "prefetch"]);
        assert_eq!(r.runs, 1);
    }

    #[test]
    fn planned_but_unregistered_strategy_is_left_out() {
        let r = run(&["--strategy", "dataloader,handwritten,dataloader"]);
        assert_eq!(r.strategies, vec!["handwritten"]);
        assert_eq!(r.not_implemented, vec!["dataloader"]);
        assert!(run(&[]).not_implemented.is_empty());
    }

    #[test]
    fn child_mode() {
        assert_eq!(
            p(&[
                "--child",
                "W4",
                "handwritten",
                "--runs",
                "2",
                "--scale",
                "tiny",
                "--orders",
                "10"
            ])
            .ok(),
            Some(Command::Child(ChildArgs {
                workload: Workload::W4,
                strategy: "handwritten".into(),
                runs: 2,
                scale: Scale::Tiny,
                orders: Some(10),
            }))
        );
        assert!(p(&["--child", "W4"]).is_err());
        assert!(p(&["--child", "W9", "handwritten"]).is_err());
        assert!(p(&["--child", "W1", "dataloader"]).is_err());
    }

    #[test]
    fn help() {
        assert_eq!(p(&["--help"]).ok(), Some(Command::Help));
        assert_eq!(p(&["--runs", "2", "-h"]).ok(), Some(Command::Help));
    }

    #[test]
    fn errors() {
        let err = |args: &[&str]| match p(args) {
            Err(BenchError::Usage(msg)) => msg,
            other => panic!("expected a usage error, got {other:?}"),
        };
        assert!(err(&["--workload", "W6"]).contains("unknown workload \"W6\""));
        assert!(err(&["--strategy", "magic"]).contains("available: handwritten, prefetch"));
        assert!(err(&["--runs", "0"]).contains("positive integer"));
        assert!(err(&["--runs", "x"]).contains("positive integer"));
        assert!(err(&["--runs"]).contains("needs a value"));
        assert!(err(&["--scale", "huge"]).contains("full, tiny or x10"));
        assert!(err(&["--orders", "0"]).contains("positive integer"));
        assert!(err(&["--frobnicate"]).contains("unknown argument"));
        assert!(err(&["--json=yes"]).contains("unknown argument"));
        assert!(err(&["W1"]).contains("unknown argument"));
    }
}
