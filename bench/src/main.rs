//! The benchmark runner CLI; see `matrx-orm-bench --help`.

use matrx_orm_bench::cli::{self, Command};
use matrx_orm_bench::error::Result;
use matrx_orm_bench::{child, registry, runner};

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("matrx-orm-bench: error: {e}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = registry::registry().iter().map(|s| s.name).collect();
    match cli::parse(&args, &names, &registry::PLANNED)? {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(0)
        }
        Command::Run(args) => runner::run(&args),
        Command::Child(c) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(child::run_child(
                c.workload,
                &c.strategy,
                c.runs,
                c.scale,
                c.orders,
            ))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(0)
        }
    }
}
