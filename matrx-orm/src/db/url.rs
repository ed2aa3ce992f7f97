//! The options of a database URL that matrx-orm reads itself, taken out before the
//! rest goes to the driver: `sslmode` (with libpq's `verify-ca` and `verify-full`,
//! which the driver does not know), `sslrootcert`, and `statement_mode`.

use std::path::PathBuf;
use std::str::FromStr;

use crate::base::error::{Error, Result};
use crate::statement::mode::StatementMode;

/// How a connection uses TLS: libpq's `sslmode`, read from the URL
/// (`?sslmode=verify-full&sslrootcert=/path/ca.pem`). Default: `prefer`.
///
/// ```
/// use matrx_orm::SslMode;
/// assert_eq!("verify-full".parse::<SslMode>().ok(), Some(SslMode::VerifyFull));
/// assert_eq!(SslMode::default(), SslMode::Prefer);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate is not
    /// verified (encryption without authentication, as libpq).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not verified (as libpq), unless
    /// `sslrootcert` names a CA, which the chain must then lead to (as `verify-ca`).
    Require,
    /// TLS, and the certificate chain must lead to a trusted CA (`sslrootcert`, or the
    /// platform's roots); the host name is not checked.
    VerifyCa,
    /// TLS, a chain to a trusted CA, and a certificate naming the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::InvalidInput(format!(
                    "sslmode={other:?}: expected disable, prefer, require, verify-ca or \
                     verify-full"
                )))
            }
        })
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// The platform's store (`sslrootcert` absent, or `sslrootcert=system`).
    System,
    /// The PEM certificates of a file.
    File(PathBuf),
}

/// A URL split into what matrx-orm reads and what the driver reads.
#[derive(Debug, Clone)]
pub(crate) struct ConnectUrl {
    /// The URL without matrx-orm's options.
    pub(crate) driver: String,
    pub(crate) ssl_mode: SslMode,
    pub(crate) root_certs: RootCerts,
    /// Whether `sslrootcert` was given (libpq's `require` then verifies the chain).
    pub(crate) root_certs_given: bool,
    pub(crate) statement_mode: Option<StatementMode>,
}

impl ConnectUrl {
    /// Splits `url`: the URL form's query string, or the unquoted `key=value` words of
    /// the key/value form.
    pub(crate) fn parse(url: &str) -> Result<ConnectUrl> {
        let mut out = ConnectUrl {
            driver: String::new(),
            ssl_mode: SslMode::default(),
            root_certs: RootCerts::System,
            root_certs_given: false,
            statement_mode: None,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                if !out.take(key, &percent_decode(value)?)? {
                    kept.push(pair);
                }
            }
            out.driver = if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
        } else if url.contains(['\'', '\\']) {
            out.driver = url.to_owned();
        } else {
            let mut kept = Vec::new();
            for word in url.split_whitespace() {
                let (key, value) = word.split_once('=').unwrap_or((word, ""));
                if !out.take(key, value)? {
                    kept.push(word);
                }
            }
            out.driver = kept.join(" ");
        }
        Ok(out)
    }

    /// Reads one option if it is matrx-orm's; says whether it was.
    fn take(&mut self, key: &str, value: &str) -> Result<bool> {
        let in_url = |err: Error| match err {
            Error::InvalidInput(m) => Error::InvalidInput(format!("invalid database URL: {m}")),
            other => other,
        };
        match key {
            "sslmode" => self.ssl_mode = value.parse().map_err(in_url)?,
            "sslrootcert" => {
                self.root_certs_given = true;
                self.root_certs = match value {
                    "system" => RootCerts::System,
                    path => RootCerts::File(PathBuf::from(path)),
                };
            }
            "statement_mode" => self.statement_mode = Some(value.parse().map_err(in_url)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Decodes `%XX` escapes (a file path in a URL).
fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::InvalidInput(format!("invalid database URL: bad escape in {text:?}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::InvalidInput(format!("invalid database URL: {text:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form_options_are_taken_out() {
        let url = ConnectUrl::parse(
            "postgres://u@h:1/db?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Ftmp%2Fca.pem&statement_mode=unnamed",
        )
        .unwrap();
        assert_eq!(url.driver, "postgres://u@h:1/db?application_name=x");
        assert_eq!(url.ssl_mode, SslMode::VerifyFull);
        assert_eq!(url.root_certs, RootCerts::File("/tmp/ca.pem".into()));
        assert_eq!(url.statement_mode, Some(StatementMode::Unnamed));
    }

    #[test]
    fn key_value_form_and_defaults() {
        let url = ConnectUrl::parse("host=h user=u sslmode=require").unwrap();
        assert_eq!(url.driver, "host=h user=u");
        assert_eq!(url.ssl_mode, SslMode::Require);
        let plain = ConnectUrl::parse("postgres://u@h/db").unwrap();
        assert_eq!(plain.driver, "postgres://u@h/db");
        assert_eq!(plain.ssl_mode, SslMode::Prefer);
        assert_eq!(plain.root_certs, RootCerts::System);
        assert_eq!(plain.statement_mode, None);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert!(matches!(
            ConnectUrl::parse("postgres://h/db?sslmode=sometimes"),
            Err(Error::InvalidInput(m)) if m.starts_with("invalid database URL")
        ));
        assert!(matches!(
            ConnectUrl::parse("postgres://h/db?statement_mode=named"),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            ConnectUrl::parse("postgres://h/db?sslrootcert=%zz"),
            Err(Error::InvalidInput(_))
        ));
    }
}
