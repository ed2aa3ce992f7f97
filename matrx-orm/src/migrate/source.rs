//! Migrations as data: [`Migration`] (one `<version>_<name>` folder with its `up.sql`
//! and optional `down.sql`) and [`Migrations`] (a set ordered by version), embedded at
//! compile time by [`embed_migrations!`](crate::embed_migrations) or read from a
//! directory at run time.

use std::borrow::Cow;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::migrate::error::MigrateError;

/// The comment line that makes a file run outside a transaction, statement by
/// statement (for `CREATE INDEX CONCURRENTLY` and the like).
pub const NO_TRANSACTION: &str = "-- matrx-orm: no-transaction";

/// One migration: a version, a name, the SQL that applies it and the SQL that
/// reverts it.
///
/// ```
/// use matrx_orm::migrate::Migration;
///
/// let m = Migration::embedded(1, "create_tags", "CREATE TABLE tags (id bigint)", Some("DROP TABLE tags"));
/// assert!(m.up_in_transaction());
/// assert_eq!(m.checksum().len(), 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The version: the digits before the first `_` of the folder name.
    pub version: i64,
    /// The name: the rest of the folder name.
    pub name: Cow<'static, str>,
    /// The SQL of `up.sql`.
    pub up: Cow<'static, str>,
    /// The SQL of `down.sql`, if there is one.
    pub down: Option<Cow<'static, str>>,
}

impl Migration {
    /// A migration whose text lives in the binary (what the macro writes).
    pub const fn embedded(
        version: i64,
        name: &'static str,
        up: &'static str,
        down: Option<&'static str>,
    ) -> Migration {
        Migration {
            version,
            name: Cow::Borrowed(name),
            up: Cow::Borrowed(up),
            down: match down {
                Some(d) => Some(Cow::Borrowed(d)),
                None => None,
            },
        }
    }

    /// The SHA-256 of `up.sql` in hex: recorded when the migration is applied and
    /// compared on every later run.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.up.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `up.sql` runs in a transaction (it does unless it carries
    /// [`NO_TRANSACTION`]).
    pub fn up_in_transaction(&self) -> bool {
        !has_marker(&self.up)
    }

    /// Whether `down.sql` runs in a transaction.
    pub fn down_in_transaction(&self) -> bool {
        !self.down.as_deref().is_some_and(has_marker)
    }

    /// Reads one `<version>_<name>` folder.
    pub fn from_folder(path: &Path) -> Result<Migration, MigrateError> {
        let bad = |reason: &str| MigrateError::BadFolder {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let folder = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad("the folder name is not UTF-8"))?;
        let (version, name) = parse_folder_name(folder).ok_or_else(|| {
            bad("a migration folder is named <version>_<name>, the version in digits")
        })?;
        let read = |file: &str| {
            let p = path.join(file);
            std::fs::read_to_string(&p).map_err(|source| MigrateError::Io { path: p, source })
        };
        if !path.join("up.sql").is_file() {
            return Err(bad("no up.sql"));
        }
        let up = read("up.sql")?;
        let down = if path.join("down.sql").is_file() {
            Some(Cow::Owned(read("down.sql")?))
        } else {
            None
        };
        Ok(Migration {
            version,
            name: Cow::Owned(name.to_owned()),
            up: Cow::Owned(up),
            down,
        })
    }
}

/// Splits `0042_add_tags` into `(42, "add_tags")`; `None` unless the part before the
/// first `_` is digits and a name follows.
pub fn parse_folder_name(folder: &str) -> Option<(i64, &str)> {
    let (digits, name) = folder.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, name))
}

fn has_marker(sql: &str) -> bool {
    sql.lines().any(|l| l.trim() == NO_TRANSACTION)
}

/// Migrations ordered by version, with no version twice.
///
/// Embed a folder in the binary with [`embed_migrations!`](crate::embed_migrations),
/// or read one at run time with [`Migrations::from_dir`]:
///
/// ```no_run
/// # fn demo() -> Result<(), matrx_orm::migrate::MigrateError> {
/// let migrations = matrx_orm::migrate::Migrations::from_dir("migrations")?;
/// for m in migrations.iter() {
///     println!("{} {}", m.version, m.name);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Migrations {
    list: Cow<'static, [Migration]>,
}

impl Migrations {
    /// Migrations already sorted and checked (what the macro writes; it sorts them
    /// and refuses duplicates at compile time).
    #[doc(hidden)]
    pub const fn embedded(list: &'static [Migration]) -> Migrations {
        Migrations {
            list: Cow::Borrowed(list),
        }
    }

    /// Migrations from a list in any order; two with one version are an error.
    pub fn new(mut list: Vec<Migration>) -> Result<Migrations, MigrateError> {
        list.sort_by_key(|m| m.version);
        for pair in list.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrateError::DuplicateVersion {
                    version: pair[0].version,
                    first: pair[0].name.to_string(),
                    second: pair[1].name.to_string(),
                });
            }
        }
        Ok(Migrations {
            list: Cow::Owned(list),
        })
    }

    /// Reads every `<version>_<name>` folder of `dir` (files beside them, such as a
    /// README, are ignored).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Migrations, MigrateError> {
        let dir = dir.as_ref();
        let io = |source| MigrateError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut list = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if path.is_dir() && !hidden {
                list.push(Migration::from_folder(&path)?);
            }
        }
        Migrations::new(list)
    }

    /// The migrations, oldest first.
    pub fn iter(&self) -> std::slice::Iter<'_, Migration> {
        self.list.iter()
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.list.iter().find(|m| m.version == version)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        assert_eq!(parse_folder_name("0042_add_tags"), Some((42, "add_tags")));
        assert_eq!(
            parse_folder_name("20261203120000_init"),
            Some((20261203120000, "init"))
        );
        assert_eq!(parse_folder_name("v1_init"), None);
        assert_eq!(parse_folder_name("0001_"), None);
        assert_eq!(parse_folder_name("0001"), None);
    }

    #[test]
    fn marker_and_duplicates() {
        let m = Migration::embedded(1, "a", "-- matrx-orm: no-transaction\nSELECT 1", None);
        assert!(!m.up_in_transaction() && m.down_in_transaction());
        let dup = Migrations::new(vec![m.clone(), m]);
        assert!(matches!(
            dup,
            Err(MigrateError::DuplicateVersion { version: 1, .. })
        ));
    }
}
