//! The throwaway cluster, each test run in a child process of this test binary
//! with `MATRX_TEST_THROWAWAY=1`, so the forced path starts its own cluster and
//! the clean-up after the process ends can be observed from outside.
//!
//! These tests fail (with the testkit's error) on machines that cannot start a
//! throwaway cluster; they never skip.

mod common;

use std::error::Error;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{block_on, is_child, TestResult};
use matrx_orm_testkit::{connect, server, shutdown, ServerSource, TestSchema};

/// Marks the line the child reports the cluster on.
const REPORT_MARKER: &str = "THROWAWAY-CLUSTER";

#[test]
fn throwaway_cluster_works_and_is_removed_when_the_process_exits() -> TestResult {
    const NAME: &str = "throwaway_cluster_works_and_is_removed_when_the_process_exits";
    if is_child(NAME) {
        return block_on(use_cluster_then_exit());
    }
    let stdout = run_child(NAME)?;
    let (port, data_dir) = parse_report(&stdout)?;
    let gone = wait_until(Duration::from_secs(15), || {
        cluster_is_gone(port, Path::new(&data_dir))
    });
    assert!(
        gone,
        "cluster on port {port} ({data_dir}) still there 15 s after its process ended"
    );
    Ok(())
}

#[test]
fn shutdown_stops_the_throwaway_cluster_and_is_idempotent() -> TestResult {
    const NAME: &str = "shutdown_stops_the_throwaway_cluster_and_is_idempotent";
    if is_child(NAME) {
        return block_on(shut_down_explicitly());
    }
    let stdout = run_child(NAME)?;
    assert!(
        stdout.contains("shutdown checked"),
        "child output:\n{stdout}"
    );
    Ok(())
}

/// Child: uses the cluster, reports where it lives, and exits without cleaning up.
async fn use_cluster_then_exit() -> TestResult {
    let server = server().await?;
    assert_eq!(server.source(), ServerSource::Throwaway);
    let client = connect(server.url()).await?;
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    if server.has_pg_stat_statements() {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await?;
        client
            .query_one("SELECT count(*) FROM pg_stat_statements", &[])
            .await?;
    }
    let schema = TestSchema::create("throwaway").await?;
    schema.drop_now().await?;
    let data_dir = data_directory(&client).await?;
    let port = port_of(server.url())?;
    // The harness prints "test <name> ... " on the same line first.
    println!(
        "{REPORT_MARKER} port={port} data_dir={data_dir} pg_stat_statements={}",
        server.has_pg_stat_statements()
    );
    Ok(())
}

/// Child: shuts the cluster down twice and checks it is gone right after the first.
async fn shut_down_explicitly() -> TestResult {
    let server = server().await?;
    assert_eq!(server.source(), ServerSource::Throwaway);
    let client = connect(server.url()).await?;
    let data_dir = data_directory(&client).await?;
    let port = port_of(server.url())?;
    shutdown().await;
    assert!(
        cluster_is_gone(port, Path::new(&data_dir)),
        "cluster still there right after shutdown()"
    );
    shutdown().await;
    println!("shutdown checked");
    Ok(())
}

/// Runs `test_name` in a child process forced onto the throwaway path; returns its stdout.
fn run_child(test_name: &str) -> Result<String, Box<dyn Error>> {
    let output = common::run_child(test_name, |child| child.env("MATRX_TEST_THROWAWAY", "1"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("started a throwaway PostgreSQL"),
        "child did not announce its cluster:\n{stderr}"
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `(port, data_dir)` from the child's report line.
fn parse_report(stdout: &str) -> Result<(u16, String), Box<dyn Error>> {
    let line = stdout
        .lines()
        .find_map(|line| line.split_once(REPORT_MARKER).map(|(_, rest)| rest))
        .ok_or_else(|| format!("no report line in child output:\n{stdout}"))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key))
            .ok_or_else(|| format!("no {key} in report line {line:?}"))
    };
    Ok((field("port=")?.parse()?, field("data_dir=")?.to_owned()))
}

async fn data_directory(client: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    Ok(client.query_one("SHOW data_directory", &[]).await?.get(0))
}

/// The port of a `postgres://user@127.0.0.1:PORT/db` URL.
fn port_of(url: &str) -> Result<u16, Box<dyn Error>> {
    let after_host = url
        .rsplit_once(':')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("no port in {url}"))?;
    let digits: String = after_host
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(digits.parse()?)
}

/// Nothing listens on `port` any more and the cluster's directory is removed.
fn cluster_is_gone(port: u16, data_dir: &Path) -> bool {
    let temp_dir_gone = data_dir.parent().is_some_and(|dir| !dir.exists());
    let port_closed = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_err();
    !data_dir.exists() && temp_dir_gone && port_closed
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}
