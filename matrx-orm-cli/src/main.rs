//! `matrx-orm`: generate models from an existing PostgreSQL schema, check generated
//! models against it, and run versioned migrations. Argument parsing and dispatch are
//! in the library's [`cli`](matrx_orm_cli::cli) module, so an application can build the
//! same command with its models compiled in (for `migrate diff`).

fn main() -> std::process::ExitCode {
    matrx_orm_cli::cli::main(&[])
}
