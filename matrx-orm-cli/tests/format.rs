//! The golden outputs are exactly what rustfmt would write: the toolchain's
//! `rustfmt --check --edition 2021` accepts every generated file unchanged.

use std::path::Path;
use std::process::Command;

#[test]
fn golden_files_are_rustfmt_clean() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&golden).expect("read tests/golden") {
        let dir = dir.expect("entry").path();
        for file in std::fs::read_dir(&dir).expect("read a golden directory") {
            let file = file.expect("entry").path();
            if file.extension().is_some_and(|e| e == "rs") {
                files.push(file);
            }
        }
    }
    assert!(!files.is_empty(), "no golden files found");
    files.sort();
    let rustfmt = std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".to_owned());
    let output = Command::new(&rustfmt)
        .args(["--check", "--edition", "2021"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {rustfmt} (install it with `rustup component add rustfmt`): {e}")
        });
    assert!(
        output.status.success(),
        "rustfmt would change the generated files:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
