//! A throwaway cluster of a test's own with TLS: a certificate authority and a server
//! certificate for `localhost` are made with the machine's `openssl` in a temporary
//! directory, the cluster starts with `ssl = on`, and optionally refuses plaintext
//! (`hostssl` lines only in `pg_hba.conf`). A second, unrelated CA is made too, for
//! tests that must see verification fail. [`TlsCluster::plain`] starts a cluster
//! without TLS.
//!
//! Starting runs `initdb`, `openssl` and `pg_ctl`: a few seconds, blocking the
//! calling thread.
//!
//! ```no_run
//! # fn demo() -> Result<(), matrx_orm_testkit::TestkitError> {
//! let cluster = matrx_orm_testkit::TlsCluster::builder().hostssl_only(true).start()?;
//! let url = format!(
//!     "{}?sslmode=verify-full&sslrootcert={}",
//!     cluster.url(),
//!     cluster.ca_file().display()
//! );
//! # let _ = url; Ok(()) }
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::{create_temp_dir, run, start_owned, Extras, OwnedCluster, RunAs};
use crate::TestkitError;

/// How a [`TlsCluster`] is set up: see [`TlsCluster::builder`].
#[derive(Debug, Clone, Default)]
pub struct TlsClusterBuilder {
    hostssl_only: bool,
}

/// A running cluster of a test's own; stopped and removed when dropped.
#[derive(Debug)]
pub struct TlsCluster {
    cluster: OwnedCluster,
    certs: Option<Certs>,
}

#[derive(Debug)]
struct Certs {
    dir: PathBuf,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl TlsCluster {
    /// A cluster with `ssl = on` and a certificate for `localhost` signed by a CA of
    /// its own ([`ca_file`](Self::ca_file)).
    pub fn builder() -> TlsClusterBuilder {
        TlsClusterBuilder::default()
    }

    /// A cluster with `ssl = off`.
    pub fn plain() -> Result<TlsCluster, TestkitError> {
        let cluster = start_owned(Extras {
            settings: vec!["ssl = off".to_owned()],
            ..Extras::default()
        })?;
        Ok(TlsCluster {
            cluster,
            certs: None,
        })
    }

    /// `postgres://postgres@localhost:<port>/postgres` (the name its certificate holds).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres",
            self.cluster.port
        )
    }

    /// The same server by address (`127.0.0.1`), a name its certificate does not hold.
    pub fn url_by_address(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.cluster.port
        )
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.cert_dir().join("ca.pem")
    }

    /// The PEM file of another CA, which signed nothing the server holds.
    pub fn other_ca_file(&self) -> PathBuf {
        self.cert_dir().join("other-ca.pem")
    }

    fn cert_dir(&self) -> PathBuf {
        self.certs
            .as_ref()
            .map_or_else(PathBuf::new, |certs| certs.dir.clone())
    }
}

impl TlsClusterBuilder {
    /// Refuse plaintext connections over TCP (`hostssl` lines only).
    pub fn hostssl_only(mut self, only: bool) -> Self {
        self.hostssl_only = only;
        self
    }

    /// Makes the certificates and starts the cluster; fails with
    /// [`TestkitError::ServiceUnavailable`] when `openssl` is missing.
    pub fn start(self) -> Result<TlsCluster, TestkitError> {
        // Owned by the cluster's user, whose watchdog removes it with the cluster even
        // when this process ends without dropping the handle.
        let certs = Certs {
            dir: create_temp_dir(RunAs::detect()?)?,
        };
        make_certificates(&certs.dir)?;
        let host = if self.hostssl_only { "hostssl" } else { "host" };
        let hba = format!(
            "local all all trust\n{host} all all 127.0.0.1/32 trust\n{host} all all ::1/128 trust\n"
        );
        let cluster = start_owned(Extras {
            settings: vec![
                "ssl = on".to_owned(),
                "ssl_cert_file = 'server.pem'".to_owned(),
                "ssl_key_file = 'server.key'".to_owned(),
            ],
            hba: Some(hba),
            files: vec![
                ("server.pem", certs.dir.join("server.pem")),
                ("server.key", certs.dir.join("server.key")),
            ],
            also_remove: Some(certs.dir.clone()),
        })?;
        Ok(TlsCluster {
            cluster,
            certs: Some(certs),
        })
    }
}

/// A CA, a server certificate for `localhost` it signs, and an unrelated CA.
fn make_certificates(dir: &Path) -> Result<(), TestkitError> {
    let ext = dir.join("server.ext");
    fs::write(
        &ext,
        "subjectAltName = DNS:localhost\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )
    .map_err(|e| TestkitError::unavailable("openssl", e))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_ext = [
        "-addext",
        "basicConstraints = critical, CA:TRUE",
        "-addext",
        "keyUsage = critical, keyCertSign, cRLSign",
    ];
    for (name, subject) in [
        ("ca", "/CN=matrx-orm test CA"),
        ("other-ca", "/CN=unrelated CA"),
    ] {
        openssl(dir, |c| {
            c.args(["req", "-x509", "-days", "2", "-subj", subject])
                .args(ec)
                .args(ca_ext)
                .args([
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                ]);
        })?;
    }
    openssl(dir, |c| {
        c.args(["req", "-new", "-subj", "/CN=localhost"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"]);
    })?;
    openssl(dir, |c| {
        c.args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
        ])
        .args([
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
        ])
        .arg(&ext);
    })
}

fn openssl(dir: &Path, args: impl FnOnce(&mut Command)) -> Result<(), TestkitError> {
    let mut command = Command::new("openssl");
    command.current_dir(dir).stdin(std::process::Stdio::null());
    args(&mut command);
    run(&mut command).map_err(|detail| TestkitError::unavailable("openssl", detail))
}
