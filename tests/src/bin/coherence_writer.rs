//! A second OS process for `tests/coherence.rs`: writes versions of one counter
//! through its own `Db` and reports each commit on stdout.
//!
//! `coherence_writer <url> <schema> <channel> <id> <from> <to> [<redis url>]`: with a
//! Redis URL, the writer caches counters there too (its writes evict Redis).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (fixed, redis) = match args.len() {
        6 => (&args[..], None),
        7 => (&args[..6], Some(args[6].as_str())),
        _ => (&args[..0], None),
    };
    let [url, schema, channel, id, from, to] = fixed else {
        eprintln!(
            "usage: coherence_writer <url> <schema> <channel> <id> <from> <to> [<redis url>]"
        );
        return ExitCode::from(2);
    };
    let numbers = (id.parse(), from.parse(), to.parse());
    let (Ok(id), Ok(from), Ok(to)) = numbers else {
        eprintln!("coherence_writer: <id> <from> <to> must be integers");
        return ExitCode::from(2);
    };
    match matrx_orm_tests::coherence::write_versions(url, schema, channel, id, from, to, redis)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coherence_writer: {e}");
            ExitCode::FAILURE
        }
    }
}
