//! A private PostgreSQL cluster a test controls (restart, stop, start), built with the
//! machine's `initdb` and `pg_ctl` the way the testkit's throwaway cluster is (as the
//! `postgres` user when the tests run as root), but owned by one test: the testkit's
//! cluster is shared by every test of the process and cannot be restarted.
//!
//! A watchdog shell, reading a pipe only this process writes, stops the server and
//! removes the directory when the value is dropped or the process dies.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const WATCHDOG: &str =
    r#"read -r _line; "$0" -D "$1" stop -m immediate >/dev/null 2>&1; rm -rf "$2""#;

/// A running private cluster; stopped and removed on drop.
pub struct PrivateCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    watchdog: Option<Child>,
}

impl PrivateCluster {
    /// Initialises and starts a cluster on a free port of 127.0.0.1. `None` when the
    /// machine has no PostgreSQL binaries (the caller skips); panics on other failures.
    /// Blocking: call it from `spawn_blocking`.
    pub fn start(name: &str) -> Option<PrivateCluster> {
        let bin = find_bin_dir()?;
        let run_as = run_as();
        let dir = std::env::temp_dir().join(format!(
            "matrx-orm-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir(&dir).expect("create the cluster directory");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the directory");
        }
        let mut cluster = PrivateCluster {
            bin,
            dir,
            port: 0,
            run_as,
            watchdog: None,
        };
        let watchdog = cluster
            .command("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(cluster.bin.join("pg_ctl"))
            .arg(cluster.data_dir())
            .arg(&cluster.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the watchdog");
        cluster.watchdog = Some(watchdog);
        let mut initdb = cluster.command(cluster.bin.join("initdb"));
        initdb.arg("-D").arg(cluster.data_dir()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb).expect("initdb");
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n",
            cluster.dir.display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(cluster.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("configure the cluster");
        for attempt in 0..3 {
            cluster.port = free_port();
            match cluster.pg_ctl("start") {
                Ok(()) => return Some(cluster),
                Err(e) if attempt < 2 && e.contains("already in use") => continue,
                Err(e) => panic!("pg_ctl start: {e}"),
            }
        }
        unreachable!()
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: in-flight statements are cancelled, sessions ended,
    /// and the server is back when this returns. Blocking.
    pub fn restart_fast(&self) -> Result<(), String> {
        self.pg_ctl("restart")
    }

    /// `pg_ctl stop -m fast`. Blocking.
    pub fn stop_fast(&self) -> Result<(), String> {
        let mut cmd = self.command(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-m", "fast", "stop"]);
        run(&mut cmd)
    }

    /// `pg_ctl start` on the same port. Blocking.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl("start")
    }

    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let mut cmd = self.command(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-m", "fast", "-o"])
            .arg(format!("-p {}", self.port))
            .arg(action);
        run(&mut cmd)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    ))
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The directory of `pg_ctl` (on PATH, else the newest `/usr/lib/postgresql/*/bin`)
/// holding `initdb` and `postgres` too.
fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("bin"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    versioned.sort();
    versioned.reverse();
    on_path.into_iter().chain(versioned).find_map(|dir| {
        let pg_ctl = fs::canonicalize(dir.join("pg_ctl")).ok()?;
        let bin = pg_ctl.parent()?.to_path_buf();
        let complete = ["initdb", "pg_ctl", "postgres"].iter().all(|tool| {
            fs::metadata(bin.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
        complete.then_some(bin)
    })
}

/// The `postgres` user's uid and gid when this process runs as root (the server
/// refuses to run as root).
fn run_as() -> Option<(u32, u32)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let euid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != "postgres" {
            return None;
        }
        let uid = f.nth(1)?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((uid, gid))
    })
}
