//! A transaction aborted by a failed statement, and the savepoints that end the abort,
//! checked against the server itself: every short sequence of failures, writes,
//! savepoint opens, rollbacks, releases and drops runs once through the ORM and once as
//! the same statements on a plain connection, and the two must answer every step alike
//! and commit the same rows (or nothing).
//!
//! The server's rules, which the ORM keeps: a failed statement aborts the whole
//! transaction, whatever savepoint it ran in; while aborted, `SAVEPOINT` and `RELEASE`
//! are refused and change nothing; `ROLLBACK TO SAVEPOINT s` for any savepoint `s`
//! still open ends the abort; `COMMIT` of an aborted transaction rolls back.

mod common;

use std::future::Future;
use std::pin::Pin;

use common::{test_db, TestDb};
use futures_util::FutureExt;
use matrx_orm::{Error, Transaction};
use matrx_orm_testkit::quote_ident;
use tokio_postgres::Client;

/// One step of a sequence. Statements run at the current level: the root transaction,
/// or the innermost open savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// A statement that succeeds (unless the transaction is aborted): inserts a row
    /// tagged with the step's index.
    Write,
    /// A statement the server refuses (division by zero).
    Fail,
    /// Opens a savepoint (`savepoint()`; `SAVEPOINT`).
    Open,
    /// Rolls the innermost savepoint back (`rollback()`; `ROLLBACK TO` + `RELEASE`).
    RollbackTo,
    /// Releases the innermost savepoint (`commit()`; `RELEASE`).
    Release,
    /// Drops the innermost savepoint (the ORM rolls it back before the next statement).
    Drop,
}

const OPS: [Op; 6] = [
    Op::Write,
    Op::Fail,
    Op::Open,
    Op::RollbackTo,
    Op::Release,
    Op::Drop,
];

/// What a step got back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Ok,
    Err,
    /// A drop, which has no answer of its own.
    Dropped,
    /// Nothing to end: the savepoint it would end could not be opened.
    Skipped,
}

fn answer<T>(result: &Result<T, impl std::fmt::Debug>) -> Answer {
    match result {
        Ok(_) => Answer::Ok,
        Err(_) => Answer::Err,
    }
}

/// The run's outcome: each step's answer (then the releases of savepoints left open at
/// the end), whether the commit was accepted, and the steps whose rows it committed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    answers: Vec<Answer>,
    committed: bool,
    rows: Vec<i32>,
    /// What the ORM's `commit` answered, when it does not match what it did.
    commit_disagrees: Option<String>,
}

const TABLE: &str = "sp_rows";
const FAIL: &str = "SELECT 1 / 0";
/// The step number of the row every run writes first, at the root.
const MARKER: i32 = -1;

/// Every sequence of 1 to `max_len` steps that never ends a savepoint where none is
/// open and never nests more than two.
fn sequences(max_len: usize) -> Vec<Vec<Op>> {
    let mut out = Vec::new();
    let mut frontier: Vec<(Vec<Op>, usize)> = vec![(Vec::new(), 0)];
    for _ in 0..max_len {
        let mut next = Vec::new();
        for (seq, depth) in &frontier {
            for op in OPS {
                let depth = match op {
                    Op::Write | Op::Fail => *depth,
                    Op::Open if *depth < 2 => depth + 1,
                    Op::Open => continue,
                    Op::RollbackTo | Op::Release | Op::Drop if *depth > 0 => depth - 1,
                    Op::RollbackTo | Op::Release | Op::Drop => continue,
                };
                let mut seq = seq.clone();
                seq.push(op);
                out.push(seq.clone());
                next.push((seq, depth));
            }
        }
        frontier = next;
    }
    out
}

async fn rows_of(db: &TestDb, run: i32) -> Vec<i32> {
    let sql = format!("SELECT step FROM {TABLE} WHERE run = $1 ORDER BY step");
    db.query_sql(&sql, &[&run])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn committed(rows: &mut Vec<i32>) -> bool {
    let marked = rows.first() == Some(&MARKER);
    rows.retain(|&step| step != MARKER);
    marked
}

/// The ORM: `ops` on `db.begin()`, savepoints nested through the borrow; savepoints
/// still open at the end are released, then the root commits.
async fn through_the_orm(db: &TestDb, ops: &[Op], run: i32) -> Outcome {
    let mut tx = db.begin().await.unwrap();
    let insert = format!("INSERT INTO {TABLE} (run, step) VALUES ($1, $2)");
    tx.execute_sql(&insert, &[&run, &MARKER]).await.unwrap();
    let mut answers = Vec::new();
    let mut next = 0;
    orm_level(&mut tx, 0, ops, run, &mut next, &mut answers).await;
    let commit = tx.commit().await;
    let mut rows = rows_of(db, run).await;
    let committed = committed(&mut rows);
    // `commit` says what happened: `Ok` exactly when the rows are there, and an
    // error only for an aborted transaction (25P02).
    let commit_disagrees = match &commit {
        Ok(()) if committed => None,
        Err(err) if !committed && err.sqlstate() == Some("25P02") => None,
        _ => Some(format!("{commit:?} with the rows committed: {committed}")),
    };
    Outcome {
        answers,
        committed,
        rows,
        commit_disagrees,
    }
}

type Level<'a> = Pin<Box<dyn Future<Output = Option<Op>> + 'a>>;

/// Runs `ops[*next..]` on `tx` until the sequence ends (`None`) or a step ends `tx`
/// itself (that step, for the caller to carry out).
fn orm_level<'a>(
    tx: &'a mut Transaction<'_>,
    depth: usize,
    ops: &'a [Op],
    run: i32,
    next: &'a mut usize,
    answers: &'a mut Vec<Answer>,
) -> Level<'a> {
    Box::pin(async move {
        let insert = format!("INSERT INTO {TABLE} (run, step) VALUES ($1, $2)");
        while let Some(&op) = ops.get(*next) {
            let step = *next as i32;
            *next += 1;
            match op {
                Op::Write => answers.push(answer(&tx.execute_sql(&insert, &[&run, &step]).await)),
                Op::Fail => answers.push(answer(&tx.execute_sql(FAIL, &[]).await)),
                Op::Open => match tx.savepoint().await {
                    Ok(mut sp) => {
                        answers.push(Answer::Ok);
                        let end = orm_level(&mut sp, depth + 1, ops, run, next, answers).await;
                        let ended = match end {
                            Some(Op::RollbackTo) => answer(&sp.rollback().await),
                            Some(Op::Drop) => {
                                drop(sp);
                                Answer::Dropped
                            }
                            _ => answer(&sp.commit().await),
                        };
                        answers.push(ended);
                    }
                    Err(_) => answers.push(Answer::Err),
                },
                Op::RollbackTo | Op::Release | Op::Drop if depth > 0 => return Some(op),
                Op::RollbackTo | Op::Release | Op::Drop => answers.push(Answer::Skipped),
            }
        }
        None
    })
}

/// The server: the statements a user would write for `ops`, one at a time on a plain
/// connection, each step's error ignored like in an interactive session.
async fn on_the_server(db: &TestDb, raw: &Client, ops: &[Op], run: i32) -> Outcome {
    let insert = |step: i32| format!("INSERT INTO {TABLE} (run, step) VALUES ({run}, {step})");
    raw.batch_execute(&format!("BEGIN; {}", insert(MARKER)))
        .await
        .unwrap();
    let mut open: Vec<String> = Vec::new();
    let mut answers = Vec::new();
    for (step, &op) in ops.iter().enumerate() {
        let a = match op {
            Op::Write => answer(&raw.batch_execute(&insert(step as i32)).await),
            Op::Fail => answer(&raw.batch_execute(FAIL).await),
            Op::Open => {
                let name = format!("s{step}");
                let a = answer(&raw.batch_execute(&format!("SAVEPOINT {name}")).await);
                if a == Answer::Ok {
                    open.push(name);
                }
                a
            }
            Op::RollbackTo | Op::Release | Op::Drop => match open.pop() {
                None => Answer::Skipped,
                Some(name) => {
                    let sql = match op {
                        Op::Release => format!("RELEASE SAVEPOINT {name}"),
                        _ => format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
                    };
                    let a = answer(&raw.batch_execute(&sql).await);
                    if op == Op::Drop {
                        Answer::Dropped
                    } else {
                        a
                    }
                }
            },
        };
        answers.push(a);
    }
    while let Some(name) = open.pop() {
        answers.push(answer(
            &raw.batch_execute(&format!("RELEASE SAVEPOINT {name}"))
                .await,
        ));
    }
    // COMMIT always "succeeds": on an aborted transaction the server answers ROLLBACK.
    raw.batch_execute("COMMIT").await.unwrap();
    let mut rows = rows_of(db, run).await;
    let committed = committed(&mut rows);
    Outcome {
        answers,
        committed,
        rows,
        commit_disagrees: None,
    }
}

async fn with_table(prefix: &str) -> TestDb {
    let db = test_db(prefix).await;
    db.batch_execute(&format!(
        "CREATE TABLE {TABLE} (run int NOT NULL, step int NOT NULL)"
    ))
    .await
    .unwrap();
    db
}

async fn plain_connection(db: &TestDb) -> Client {
    let raw = matrx_orm_testkit::connect(db.schema.url()).await.unwrap();
    raw.batch_execute(&format!(
        "SET search_path TO {}",
        quote_ident(db.schema.name())
    ))
    .await
    .unwrap();
    raw
}

/// Every sequence of up to five steps (over at most two nested savepoints), through
/// the ORM and on the server: the same answer at every step, the same commit outcome,
/// the same committed rows.
#[tokio::test]
async fn every_short_sequence_commits_exactly_what_the_server_commits() {
    const LANES: usize = 4;
    let db = with_table("sp_abort_table").await;
    let seqs = sequences(5);
    assert!(seqs.len() > 1000, "{} sequences", seqs.len());
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let raw = plain_connection(&db).await;
        let (db, seqs) = (&db, &seqs);
        lanes.push(async move {
            let mut mismatches = Vec::new();
            let mut commits = [0usize; 2];
            for (i, ops) in seqs.iter().enumerate().skip(lane).step_by(LANES) {
                let run = i32::try_from(i).unwrap() * 2;
                let orm = through_the_orm(db, ops, run).await;
                let server = on_the_server(db, &raw, ops, run + 1).await;
                commits[usize::from(server.committed)] += 1;
                if orm != server {
                    mismatches.push(format!("{ops:?}\n  orm:    {orm:?}\n  server: {server:?}"));
                }
            }
            (mismatches, commits)
        });
    }
    let mut mismatches = Vec::new();
    let mut commits = [0usize; 2];
    for (m, c) in futures_util::future::join_all(lanes).await {
        mismatches.extend(m);
        commits[0] += c[0];
        commits[1] += c[1];
    }
    // Both outcomes are well represented, so the comparison is not vacuous.
    assert!(commits[0] > 100 && commits[1] > 100, "{commits:?}");
    assert!(
        mismatches.is_empty(),
        "{} of {} sequences differ from the server:\n{}",
        mismatches.len(),
        seqs.len(),
        mismatches.join("\n")
    );
}

/// A statement fails inside a savepoint, an attempt to open a savepoint inside it is
/// refused (the transaction is aborted), then the first savepoint is rolled back: the
/// server is out of the abort, so the rollback and the commit succeed.
#[tokio::test]
async fn a_rollback_to_an_earlier_savepoint_ends_the_abort_after_a_refused_savepoint() {
    let db = with_table("sp_abort_refused_open").await;
    let insert = format!("INSERT INTO {TABLE} (run, step) VALUES (0, $1)");
    let mut tx = db.begin().await.unwrap();
    tx.execute_sql(&insert, &[&1i32]).await.unwrap();
    {
        let mut sp = tx.savepoint().await.unwrap();
        sp.execute_sql(&insert, &[&2i32]).await.unwrap();
        let failed = sp.execute_sql(FAIL, &[]).await.unwrap_err();
        assert_eq!(failed.sqlstate(), Some("22012"), "{failed}");
        let refused = sp.savepoint().await.unwrap_err();
        assert_eq!(refused.sqlstate(), Some("25P02"), "{refused}");
        sp.rollback().await.unwrap();
    }
    tx.execute_sql(&insert, &[&3i32]).await.unwrap();
    {
        // The same with a drop instead of an explicit rollback.
        let mut sp = tx.savepoint().await.unwrap();
        sp.execute_sql(&insert, &[&4i32]).await.unwrap();
        sp.execute_sql(FAIL, &[]).await.unwrap_err();
        sp.savepoint().await.unwrap_err();
    }
    tx.execute_sql(&insert, &[&5i32]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows_of(&db, 0).await, [1, 3, 5]);
}

/// The same when the refused `SAVEPOINT` is cancelled before its answer arrives (the
/// ORM cannot know whether it was refused): the rollback of the enclosing savepoint
/// covers it either way.
#[tokio::test]
async fn a_cancelled_refused_savepoint_does_not_keep_the_transaction_aborted() {
    let db = with_table("sp_abort_cancelled_open").await;
    let insert = format!("INSERT INTO {TABLE} (run, step) VALUES (0, $1)");
    let mut tx = db.begin().await.unwrap();
    tx.execute_sql(&insert, &[&1i32]).await.unwrap();
    {
        let mut sp = tx.savepoint().await.unwrap();
        sp.execute_sql(FAIL, &[]).await.unwrap_err();
        assert!(
            sp.savepoint().now_or_never().is_none(),
            "cancelled in flight"
        );
        sp.rollback().await.unwrap();
    }
    tx.execute_sql(&insert, &[&2i32]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows_of(&db, 0).await, [1, 2]);
}

/// A savepoint rollback cancelled once sent still reaches the server, which then is
/// out of the abort: the transaction goes on and commits.
#[tokio::test]
async fn a_cancelled_rollback_after_a_failure_ends_the_abort() {
    let db = with_table("sp_abort_cancelled_rollback").await;
    let insert = format!("INSERT INTO {TABLE} (run, step) VALUES (0, $1)");
    let mut tx = db.begin().await.unwrap();
    tx.execute_sql(&insert, &[&1i32]).await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        sp.execute_sql(&insert, &[&2i32]).await.unwrap();
        sp.execute_sql(FAIL, &[]).await.unwrap_err();
        assert!(
            sp.rollback().now_or_never().is_none(),
            "cancelled in flight"
        );
    }
    tx.execute_sql(&insert, &[&3i32]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows_of(&db, 0).await, [1, 3]);
}

/// A statement failing at the root cannot be undone by any savepoint (none is open
/// outside it): the commit is an error and nothing is committed.
#[tokio::test]
async fn a_failure_at_the_root_cannot_commit() {
    let db = with_table("sp_abort_root").await;
    let insert = format!("INSERT INTO {TABLE} (run, step) VALUES (0, $1)");
    let mut tx = db.begin().await.unwrap();
    {
        let sp = tx.savepoint().await.unwrap();
        sp.execute_sql(&insert, &[&1i32]).await.unwrap();
        sp.commit().await.unwrap();
    }
    tx.execute_sql(FAIL, &[]).await.unwrap_err();
    assert!(tx.savepoint().await.is_err());
    let err: Error = tx.commit().await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("25P02"), "{err}");
    assert!(rows_of(&db, 0).await.is_empty());
}
