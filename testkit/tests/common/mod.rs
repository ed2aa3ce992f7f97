//! Runs one test of the current test binary in a child process, so that each
//! gets its own once-per-process server resolution.

use std::error::Error;
use std::future::Future;
use std::process::{Command, Output};

/// Result type of the tests.
pub type TestResult = Result<(), Box<dyn Error>>;

/// Tells the child process which test body to run.
const CHILD_VAR: &str = "MATRX_TESTKIT_CHILD";

/// Whether this process is the child started by [`run_child`] for `test_name`.
pub fn is_child(test_name: &str) -> bool {
    std::env::var(CHILD_VAR).is_ok_and(|name| name == test_name)
}

/// Runs `test` on a fresh current-thread runtime.
pub fn block_on(test: impl Future<Output = TestResult>) -> TestResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(test)
}

/// Runs only `test_name` in a child process of this binary with the environment
/// changed by `configure`, and fails unless it passes. Returns its output.
pub fn run_child(
    test_name: &str,
    configure: impl FnOnce(&mut Command) -> &mut Command,
) -> Result<Output, Box<dyn Error>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, test_name);
    let output = configure(&mut command).output()?;
    assert!(
        output.status.success(),
        "child process failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child did not run exactly {test_name}:\n{stdout}"
    );
    Ok(output)
}
