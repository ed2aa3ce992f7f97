//! New migration folders: `<version>_<name>/up.sql` and `down.sql`, the version a UTC
//! timestamp (`YYYYMMDDHHMMSS`), bumped past the newest folder already there.

use std::path::{Path, PathBuf};

use matrx_orm::migrate::parse_folder_name;

use crate::error::{Error, Result};

/// Creates `<dir>/<version>_<name>/` with `up.sql` and `down.sql` holding `up` and
/// `down` (creating `dir` if needed) and returns the folder. `name` is lowercased, with
/// anything but letters, digits and `_` turned into `_`.
///
/// ```no_run
/// # fn demo() -> matrx_orm_cli::Result<()> {
/// let folder = matrx_orm_cli::migrate::new_migration(
///     "migrations",
///     "add tags",
///     "CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);\n",
///     "DROP TABLE tags;\n",
/// )?;
/// assert!(folder.ends_with("_add_tags") || folder.to_string_lossy().contains("_add_tags"));
/// # Ok(()) }
/// ```
pub fn new_migration(dir: impl AsRef<Path>, name: &str, up: &str, down: &str) -> Result<PathBuf> {
    let dir = dir.as_ref();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.trim_matches('_').is_empty() {
        return Err(Error::Usage(format!(
            "a migration needs a name with letters or digits, not {name:?}"
        )));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut newest = 0i64;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if let Some((v, _)) = entry.file_name().to_str().and_then(parse_folder_name) {
            newest = newest.max(v);
        }
    }
    let now: i64 = chrono::Utc::now()
        .format("%Y%m%d%H%M%S")
        .to_string()
        .parse()
        .unwrap_or(0);
    let version = now.max(newest.saturating_add(1));
    let folder = dir.join(format!("{version}_{name}"));
    std::fs::create_dir(&folder).map_err(io(&folder))?;
    for (file, text) in [("up.sql", up), ("down.sql", down)] {
        let path = folder.join(file);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(folder)
}
