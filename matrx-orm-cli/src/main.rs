//! `matrx-orm`: generate models from an existing PostgreSQL schema, or check that
//! generated models still match it. Argument parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use matrx_orm::Db;
use matrx_orm_cli::check::compare_dir;
use matrx_orm_cli::{generate, introspect, Error, Options, Result, Unsupported};

const HELP: &str = "\
matrx-orm: models from an existing PostgreSQL schema

USAGE:
    matrx-orm generate --schema <NAME> --out <DIR> [OPTIONS]
    matrx-orm check    --schema <NAME> --models <DIR> [OPTIONS]

COMMANDS:
    generate   Read the schema from pg_catalog and write one file per model, enums.rs
               (PostgreSQL enums) and mod.rs into <DIR>.
    check      Generate again in memory and compare with the files in <DIR>; print a
               line diff and exit with status 1 when they differ (for CI). For models
               written by hand, call matrx_orm_cli::check() from a test instead.

OPTIONS:
    --database-url <URL>       The server (default: the DATABASE_URL environment variable)
    --schema <NAME>            The schema to read
    --out <DIR>                Where generate writes (created if missing)
    --models <DIR>             The generated models check compares
    --unsupported <error|skip> A column type matrx-orm has no Rust type for: fail (default),
                               or leave the column out with a comment
    --qualify                  Write #[orm(schema = ..)] instead of relying on search_path
    -h, --help                 This text

EXIT STATUS: 0 success, 1 drift found by check, 2 error.
";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Generate {
        options: Options,
        url: Option<String>,
    },
    Check {
        options: Options,
        url: Option<String>,
    },
}

fn parse(args: &[String]) -> Result<Command> {
    let usage = |m: String| Error::Usage(m);
    let Some(command) = args.first() else {
        return Ok(Command::Help);
    };
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        return Ok(Command::Help);
    }
    if command != "generate" && command != "check" {
        return Err(usage(format!(
            "unknown command {command:?}: expected `generate` or `check`"
        )));
    }
    let mut schema = None;
    let mut dir = None;
    let mut url = None;
    let mut unsupported = Unsupported::Error;
    let mut qualify = false;
    let dir_flag = if command == "generate" {
        "--out"
    } else {
        "--models"
    };
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--schema" => schema = Some(value()?),
            "--database-url" => url = Some(value()?),
            "--qualify" => qualify = true,
            "--unsupported" => {
                unsupported = match value()?.as_str() {
                    "error" => Unsupported::Error,
                    "skip" => Unsupported::Skip,
                    other => {
                        return Err(usage(format!(
                            "--unsupported takes `error` or `skip`, not {other:?}"
                        )))
                    }
                }
            }
            f if f == dir_flag => dir = Some(value()?),
            other => return Err(usage(format!("unknown option {other:?} for {command}"))),
        }
    }
    let schema = schema.ok_or_else(|| usage(format!("{command} needs --schema <NAME>")))?;
    let dir = dir.ok_or_else(|| usage(format!("{command} needs {dir_flag} <DIR>")))?;
    let mut options = Options::new(schema, dir);
    options.unsupported = unsupported;
    options.qualify = qualify;
    Ok(if command == "generate" {
        Command::Generate { options, url }
    } else {
        Command::Check { options, url }
    })
}

async fn connect(url: Option<String>) -> Result<Db> {
    let url = url
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
        .ok_or(Error::NoDatabaseUrl)?;
    Ok(Db::connect(&url).await?)
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Help => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { options, url } => {
            let db = connect(url).await?;
            let catalog = introspect(&db, &options.schema).await?;
            let generated = generate(&catalog, &options)?;
            generated.write_to(&PathBuf::from(&options.out))?;
            println!(
                "wrote {} files to {} from schema {:?}",
                generated.files.len(),
                options.out,
                options.schema
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { options, url } => {
            let db = connect(url).await?;
            let catalog = introspect(&db, &options.schema).await?;
            let generated = generate(&catalog, &options)?;
            let drift = compare_dir(&generated, &PathBuf::from(&options.out))?;
            if drift.is_empty() {
                println!(
                    "{} matches schema {:?} ({} files)",
                    options.out,
                    options.schema,
                    generated.files.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} has drifted from schema {:?}; regenerate with:\n    {}\n",
                options.out,
                options.schema,
                options.command()
            );
            for d in drift {
                println!("--- {}\n{}", d.file, d.diff);
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("matrx-orm: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("matrx-orm: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("matrx-orm: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses() {
        assert_eq!(parse(&[]).ok(), Some(Command::Help));
        let Ok(Command::Generate { options, url }) =
            parse(&args("generate --schema shop --out=src/models --qualify"))
        else {
            panic!("expected generate");
        };
        assert_eq!(options.schema, "shop");
        assert_eq!(options.out, "src/models");
        assert!(options.qualify && url.is_none());
        assert!(parse(&args("generate --schema shop")).is_err());
        assert!(parse(&args("check --schema shop --out x")).is_err());
        assert!(parse(&args("frobnicate")).is_err());
        assert!(parse(&args("generate --unsupported maybe --schema s --out o")).is_err());
    }
}
