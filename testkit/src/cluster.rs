//! A throwaway cluster started with the machine's own PostgreSQL binaries.
//!
//! Everything lives in one temporary directory (`data/`, the log and the unix
//! socket). A watchdog shell, started before anything else, removes it: it blocks
//! reading a pipe whose only writer is this process, so it wakes up when the
//! process ends however it ends (or when [`stop`] closes the pipe), stops the
//! server and deletes the directory. It runs in its own process group so a
//! Ctrl-C aimed at the tests does not kill it before it has cleaned up.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::{env, process};

use crate::TestkitError;

/// Where Debian-style packages install one `bin/` per major version.
pub(crate) const VERSIONED_ROOT: &str = "/usr/lib/postgresql";
/// The programs a bin directory must hold to be usable.
const REQUIRED_TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// How often starting is retried when another process grabs the chosen port first.
const START_ATTEMPTS: u32 = 3;
/// Waits for the pipe to close, then stops the server and removes the directory.
/// Arguments: `$0` pg_ctl, `$1` data directory, `$2` temporary directory, `$3` another
/// directory to remove with it (the same one when there is none).
const WATCHDOG_SCRIPT: &str =
    r#"read -r _line; "$0" -D "$1" stop -m immediate >/dev/null 2>&1; rm -rf "$2" "$3""#;

/// The watchdog of the running cluster, if this process started one.
static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);

/// A directory holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug)]
pub(crate) struct Binaries {
    bin_dir: PathBuf,
}

/// A cluster that accepts connections.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) url: String,
    pub(crate) port: u16,
}

/// Finds the PostgreSQL binaries on `PATH`, else the newest under [`VERSIONED_ROOT`].
pub(crate) fn find_binaries() -> Option<Binaries> {
    path_dirs()
        .into_iter()
        .chain(versioned_bin_dirs())
        .find_map(|dir| binaries_in(&dir))
}

/// A cluster's temporary directory, as its user, and the watchdog that removes it.
fn prepare(binaries: Binaries, extras: Extras) -> Result<(Setup, Child), TestkitError> {
    let user = RunAs::detect()?;
    let dir = create_temp_dir(user)?;
    let setup = Setup {
        bin_dir: binaries.bin_dir,
        user,
        dir,
        extras,
    };
    let watchdog = setup.spawn_watchdog().map_err(|err| {
        let _ = fs::remove_dir_all(&setup.dir);
        TestkitError::throwaway("starting the clean-up watchdog", err)
    })?;
    Ok((setup, watchdog))
}

/// Starts a cluster and registers its watchdog; cleans up again on failure.
pub(crate) fn start(binaries: Binaries) -> Result<Started, TestkitError> {
    let (setup, watchdog) = prepare(binaries, Extras::default())?;
    register(watchdog);
    let started = setup.init_and_start();
    if started.is_err() {
        stop();
    }
    started
}

/// What a cluster of its own adds to the default setup (the TLS tests' servers).
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// Lines appended to `postgresql.conf`.
    pub(crate) settings: Vec<String>,
    /// The whole `pg_hba.conf`, replacing initdb's.
    pub(crate) hba: Option<String>,
    /// Files copied into the data directory under these names, readable by the
    /// server only (a TLS key must be).
    pub(crate) files: Vec<(&'static str, PathBuf)>,
    /// A directory removed with the cluster's (owned by the cluster's user).
    pub(crate) also_remove: Option<PathBuf>,
}

/// A throwaway cluster owned by its handle: stopped and removed when it is dropped
/// (or when the process ends, by its watchdog).
#[derive(Debug)]
pub(crate) struct OwnedCluster {
    watchdog: Option<Child>,
    pub(crate) port: u16,
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            finish(watchdog);
        }
    }
}

/// Starts a cluster of its own with `extras`, besides the process's shared server.
pub(crate) fn start_owned(extras: Extras) -> Result<OwnedCluster, TestkitError> {
    let (setup, mut owned) = own_setup("a PostgreSQL cluster", extras)?;
    owned.port = setup.init_and_start()?.port;
    Ok(owned)
}

/// Starts a streaming standby of the cluster listening on `primary_port` (one started
/// here, whose `pg_hba.conf` trusts replication connections from 127.0.0.1): a base
/// backup with `pg_basebackup -R`, then the standby on a free port of its own.
pub(crate) fn start_standby(primary_port: u16) -> Result<OwnedCluster, TestkitError> {
    let (setup, mut owned) = own_setup("a PostgreSQL standby", Extras::default())?;
    if !is_executable(&setup.bin_dir.join("pg_basebackup")) {
        return Err(TestkitError::unavailable(
            "a PostgreSQL standby",
            format!("no pg_basebackup in {}", setup.bin_dir.display()),
        ));
    }
    setup.base_backup(primary_port)?;
    // The backup carries the primary's settings; the testkit's own lines, appended
    // again, point the standby at its own socket directory.
    setup.write_config()?;
    owned.port = setup.start_on_free_port()?;
    Ok(owned)
}

/// A temporary directory and its watchdog for a cluster owned by its handle (no
/// server yet: the handle's port is 0).
fn own_setup(service: &str, extras: Extras) -> Result<(Setup, OwnedCluster), TestkitError> {
    let binaries = find_binaries().ok_or_else(|| {
        TestkitError::unavailable(
            service,
            "no initdb, pg_ctl and postgres on PATH or under /usr/lib/postgresql",
        )
    })?;
    let (setup, watchdog) = prepare(binaries, extras)?;
    let owned = OwnedCluster {
        watchdog: Some(watchdog),
        port: 0,
    };
    Ok((setup, owned))
}

/// Stops the registered cluster and waits until its directory is gone. Idempotent.
pub(crate) fn stop() {
    let watchdog = lock_watchdog().take();
    if let Some(watchdog) = watchdog {
        finish(watchdog);
    }
}

fn register(watchdog: Child) {
    let previous = lock_watchdog().replace(watchdog);
    if let Some(previous) = previous {
        finish(previous);
    }
}

fn lock_watchdog() -> MutexGuard<'static, Option<Child>> {
    WATCHDOG.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Closes the watchdog's pipe and waits for it to clean up.
fn finish(mut watchdog: Child) {
    drop(watchdog.stdin.take());
    let _ = watchdog.wait();
}

fn path_dirs() -> Vec<PathBuf> {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default()
}

/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn versioned_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(VERSIONED_ROOT) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let version = parse_version(entry.file_name().to_str()?)?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.into_iter().rev().map(|(_, dir)| dir).collect()
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The real directory behind `dir/pg_ctl` (which may be a symlink), if complete.
fn binaries_in(dir: &Path) -> Option<Binaries> {
    let pg_ctl = fs::canonicalize(dir.join("pg_ctl")).ok()?;
    let bin_dir = pg_ctl.parent()?.to_path_buf();
    let complete = REQUIRED_TOOLS
        .iter()
        .all(|tool| is_executable(&bin_dir.join(tool)));
    complete.then_some(Binaries { bin_dir })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The user the cluster's processes run as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RunAs {
    /// This process's own user, which is not root.
    Myself,
    /// The unprivileged `postgres` system user, because this process runs as root.
    Postgres { uid: u32, gid: u32 },
}

impl RunAs {
    /// A command for `program`, run as this user.
    pub(crate) fn command(self, program: impl AsRef<Path>) -> Command {
        let mut command = Command::new(program.as_ref());
        command.stdin(Stdio::null());
        if let RunAs::Postgres { uid, gid } = self {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Gives `path` to this user (a file a service reads or writes).
    pub(crate) fn own(self, path: &Path) -> io::Result<()> {
        match self {
            RunAs::Postgres { uid, gid } => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            RunAs::Myself => Ok(()),
        }
    }

    pub(crate) fn detect() -> Result<Self, TestkitError> {
        if effective_uid() != Some(0) {
            return Ok(Self::Myself);
        }
        postgres_user()
            .map(|(uid, gid)| Self::Postgres { uid, gid })
            .ok_or(TestkitError::RootWithoutPostgresUser)
    }
}

fn effective_uid() -> Option<u32> {
    effective_uid_from_proc().or_else(effective_uid_from_id)
}

fn effective_uid_from_proc() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    // Real, effective, saved and filesystem uid, in that order.
    uids.split_whitespace().nth(1)?.parse().ok()
}

fn effective_uid_from_id() -> Option<u32> {
    let output = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// The uid and gid of a non-root `postgres` user in `/etc/passwd`.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "postgres" {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        (uid != 0).then_some((uid, gid))
    })
}

/// Starts a service under a watchdog shell: `script` runs with `/bin/sh -c` in `dir`
/// as `run_as`, `args` being its `$0`, `$1`, ..., and its stdin a pipe the handle
/// holds; the script stops the service (and removes `dir`) once the pipe closes,
/// whether the handle is dropped or the process ends. On failure `dir` is removed.
pub(crate) fn spawn_watchdog(
    run_as: RunAs,
    dir: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
) -> io::Result<std::process::Child> {
    let spawned = run_as
        .command("/bin/sh")
        .current_dir(dir)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if spawned.is_err() {
        let _ = fs::remove_dir_all(dir);
    }
    spawned
}

/// The program `name` on `PATH`, else in one of `dirs` (where Debian installs
/// services, which are not always on a user's `PATH`).
pub(crate) fn find_service_program(name: &str, dirs: &[&str]) -> Option<PathBuf> {
    let path_dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| fs::metadata(candidate).is_ok_and(|meta| meta.is_file()))
}

/// A fresh directory under the system temp dir, owned by the cluster's user.
pub(crate) fn create_temp_dir(user: RunAs) -> Result<PathBuf, TestkitError> {
    let name = format!(
        "matrx-orm-testkit-{}-{}",
        process::id(),
        crate::clock_nanos()
    );
    let dir = env::temp_dir().join(name);
    let failed = |err: io::Error| {
        TestkitError::throwaway(
            "preparing the temporary directory",
            format!("{}: {err}", dir.display()),
        )
    };
    fs::create_dir(&dir).map_err(failed)?;
    match user.own(&dir).and_then(|()| fs::canonicalize(&dir)) {
        Ok(canonical) => Ok(canonical),
        Err(err) => {
            let _ = fs::remove_dir(&dir);
            Err(failed(err))
        }
    }
}

/// Everything needed to run the cluster's commands.
struct Setup {
    bin_dir: PathBuf,
    user: RunAs,
    dir: PathBuf,
    extras: Extras,
}

impl Setup {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A command for `program`, run as the cluster's user inside the temp dir.
    fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut command = self.user.command(program);
        command.current_dir(&self.dir);
        command
    }

    fn tool(&self, name: &str) -> Command {
        self.command(self.bin_dir.join(name))
    }

    fn spawn_watchdog(&self) -> io::Result<Child> {
        self.command("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg(self.bin_dir.join("pg_ctl"))
            .arg(self.data_dir())
            .arg(&self.dir)
            .arg(self.extras.also_remove.as_ref().unwrap_or(&self.dir))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
    }

    fn init_and_start(&self) -> Result<Started, TestkitError> {
        self.initdb()?;
        self.write_config()?;
        self.write_extras()?;
        let port = self.start_on_free_port()?;
        Ok(Started {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
        })
    }

    fn initdb(&self) -> Result<(), TestkitError> {
        let mut initdb = self.tool("initdb");
        initdb.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb).map_err(|detail| TestkitError::throwaway("initdb", detail))
    }

    /// Copies the cluster on `primary_port` into the data directory as a standby
    /// (`-R` writes `standby.signal` and the connection to the primary).
    fn base_backup(&self, primary_port: u16) -> Result<(), TestkitError> {
        let mut backup = self.tool("pg_basebackup");
        backup
            .arg("-D")
            .arg(self.data_dir())
            .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
            .args(["-U", "postgres", "-R", "-X", "stream", "--no-sync"]);
        run(&mut backup).map_err(|detail| TestkitError::throwaway("pg_basebackup", detail))
    }

    /// Appends the test settings to `postgresql.conf` (later lines win).
    fn write_config(&self) -> Result<(), TestkitError> {
        let mut settings = vec![
            String::from("listen_addresses = '127.0.0.1'"),
            format!("unix_socket_directories = {}", conf_string(&self.dir)),
            String::from("fsync = off"),
            String::from("synchronous_commit = off"),
            String::from("full_page_writes = off"),
            String::from("max_connections = 200"),
        ];
        settings.extend(self.extras.settings.iter().cloned());
        if self.pg_stat_statements_available() {
            settings.push(String::from(
                "shared_preload_libraries = 'pg_stat_statements'",
            ));
        }
        let text = format!("\n# matrx-orm-testkit\n{}\n", settings.join("\n"));
        let path = self.data_dir().join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|err| {
                TestkitError::throwaway("configuring", format!("{}: {err}", path.display()))
            })
    }

    /// Copies the extra files into the data directory and replaces `pg_hba.conf`.
    fn write_extras(&self) -> Result<(), TestkitError> {
        let failed = |path: &Path, err: io::Error| {
            TestkitError::throwaway("configuring", format!("{}: {err}", path.display()))
        };
        for (name, source) in &self.extras.files {
            let target = self.data_dir().join(name);
            fs::copy(source, &target)
                .and_then(|_| fs::set_permissions(&target, fs::Permissions::from_mode(0o600)))
                .and_then(|()| self.user.own(&target))
                .map_err(|err| failed(&target, err))?;
        }
        if let Some(hba) = &self.extras.hba {
            let path = self.data_dir().join("pg_hba.conf");
            fs::write(&path, hba).map_err(|err| failed(&path, err))?;
        }
        Ok(())
    }

    /// Whether the extension's control file and library are installed for these binaries.
    fn pg_stat_statements_available(&self) -> bool {
        match self.pg_config_dirs() {
            Some((share_dir, lib_dir)) => {
                share_dir
                    .join("extension/pg_stat_statements.control")
                    .is_file()
                    && has_pg_stat_statements_library(&lib_dir)
            }
            None => self
                .bin_dir
                .parent()
                .is_some_and(|prefix| has_pg_stat_statements_library(&prefix.join("lib"))),
        }
    }

    /// `pg_config --sharedir --pkglibdir` of the `pg_config` next to the binaries.
    fn pg_config_dirs(&self) -> Option<(PathBuf, PathBuf)> {
        let output = Command::new(self.bin_dir.join("pg_config"))
            .args(["--sharedir", "--pkglibdir"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        let mut lines = text.lines();
        let dirs = (PathBuf::from(lines.next()?), PathBuf::from(lines.next()?));
        output.status.success().then_some(dirs)
    }

    /// Starts the server on a free port, trying another if that one gets taken meanwhile.
    fn start_on_free_port(&self) -> Result<u16, TestkitError> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match self.pg_ctl_start(port) {
                Err(err) if attempt < START_ATTEMPTS && port_was_taken(&err) => attempt += 1,
                outcome => return outcome.map(|()| port),
            }
        }
    }

    fn pg_ctl_start(&self, port: u16) -> Result<(), TestkitError> {
        let log_file = self.log_file();
        let log_start = fs::metadata(&log_file).map_or(0, |meta| meta.len());
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log_file)
            .args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"]);
        run(&mut pg_ctl).map_err(|detail| {
            let log = read_from(&log_file, log_start);
            TestkitError::throwaway("pg_ctl start", format!("{detail}\nserver log:\n{log}"))
        })
    }
}

fn has_pg_stat_statements_library(lib_dir: &Path) -> bool {
    ["so", "dylib"]
        .iter()
        .any(|ext| lib_dir.join(format!("pg_stat_statements.{ext}")).is_file())
}

/// Runs `command` to completion; on failure, describes what went wrong.
pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|err| err.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let said = [&output.stderr, &output.stdout]
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .join("\n");
    Err(format!("{}\n{}", output.status, said.trim()))
}

/// A port that was free a moment ago; the listener is released on return.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| TestkitError::throwaway("finding a free port", err))
}

fn port_was_taken(err: &TestkitError) -> bool {
    err.to_string().contains("Address already in use")
}

/// The text of `path` from byte `offset` on, or a note why it could not be read.
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
        }
        Err(err) => format!("({} could not be read: {err})", path.display()),
    }
}

/// A `postgresql.conf` string literal.
fn conf_string(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut versions = vec![
            parse_version("9.6"),
            parse_version("15"),
            parse_version("10"),
        ];
        versions.sort();
        assert_eq!(
            versions,
            vec![Some(vec![9, 6]), Some(vec![10]), Some(vec![15])]
        );
        assert_eq!(parse_version("main"), None);
    }

    #[test]
    fn conf_strings_are_quoted() {
        assert_eq!(conf_string(Path::new("/tmp/it's")), "'/tmp/it''s'");
    }
}
