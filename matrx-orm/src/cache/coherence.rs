//! Cache invalidations across processes: what a write announces with PostgreSQL's
//! `NOTIFY`, and how a listener reads it back. The one place that knows the payload.
//!
//! A payload names one table and the primary keys of the rows written, or the whole
//! table:
//!
//! ```text
//! 1 <keys> <table>      keys: rows joined by ';', a row's columns by ',',
//! 1 * <table>           each column in hex of its binary form (int8send, textsend, ..)
//! ```
//!
//! Keys travel in the binary form the server's send functions write (the form the
//! driver decodes), so a key names the same row in every process whatever the
//! session's `DateStyle` or `TimeZone`. The table is the unqualified table name (as in
//! a trigger's `TG_TABLE_NAME`): two models with one table name in different schemas
//! evict each other, which costs a miss and never a stale hit. The payload is written
//! by the server itself, in the statement of the write ([`push_notify_rows`]) or in a
//! trigger ([`push_notify_row`]); past [`PAYLOAD_LIMIT`] it names the whole table.

use crate::base::key::Key;
use crate::base::sql::SqlBuf;

/// The channel invalidations are sent on unless configured otherwise.
pub const DEFAULT_CHANNEL: &str = "matrx_orm_cache";

/// PostgreSQL refuses a `NOTIFY` payload of 8000 bytes or more; a payload that would
/// be longer than this names the whole table instead.
pub(crate) const PAYLOAD_LIMIT: usize = 7900;

/// The payload's format version.
const VERSION: &str = "1";

/// One invalidation read from a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalidation {
    /// The unqualified table name.
    pub(crate) table: String,
    /// Each written row's key, as the binary form of each column; `None` for every row.
    pub(crate) keys: Option<Vec<Vec<Vec<u8>>>>,
}

impl Invalidation {
    /// Reads a payload; `None` if it is not one this crate writes (the listener then
    /// drops every cached row: an invalidation it cannot read must not be missed).
    pub(crate) fn parse(payload: &str) -> Option<Invalidation> {
        let rest = payload.strip_prefix(VERSION)?.strip_prefix(' ')?;
        let (keys, table) = rest.split_once(' ')?;
        if table.is_empty() {
            return None;
        }
        let keys = if keys == "*" {
            None
        } else {
            let rows = keys
                .split(';')
                .map(|row| row.split(',').map(from_hex).collect::<Option<Vec<_>>>())
                .collect::<Option<Vec<_>>>()?;
            Some(rows)
        };
        Some(Invalidation {
            table: table.to_owned(),
            keys,
        })
    }

    /// The keys decoded as `K`; `None` for the whole table, or when a key does not
    /// decode as `K` (the caller then evicts the whole model).
    pub(crate) fn keys_as<K: Key>(&self) -> Option<Vec<K>> {
        self.keys
            .as_ref()?
            .iter()
            .map(|parts| {
                let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                K::from_wire(&parts)
            })
            .collect()
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Writes the key text of one row: `concat_ws(',', encode(int8send(<prefix>"id"::bigint), 'hex'), ..)`,
/// `prefix` being trusted text (`"w".`, `NEW.`).
pub(crate) fn push_key_text<K: Key>(sql: &mut SqlBuf, prefix: &str, columns: &[&str]) {
    sql.push("concat_ws(',', ");
    let parts = K::send_functions().into_iter().zip(K::column_types());
    for (i, ((send, pg_type), column)) in parts.zip(columns).enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("encode(")
            .push(send)
            .push("(")
            .push(prefix)
            .ident(column)
            .push("::")
            .push(&pg_type)
            .push("), 'hex')");
    }
    sql.push(")");
}

/// Writes a `SELECT` that sends one invalidation for the rows of the CTE `rows` (alias
/// `"p"` inside): their keys (`key_columns` of a key `K`), or the whole table when
/// `key_columns` is `None`; nothing when `rows` is empty. `channel` and `table` are the
/// placeholders (`$n`) of the bound channel and unqualified table name.
pub(crate) fn push_notify_rows<K: Key>(
    sql: &mut SqlBuf,
    channel: &str,
    table: &str,
    rows: &str,
    key_columns: Option<&[&str]>,
) {
    let table_ref = format!("{table}::text");
    sql.push("SELECT pg_notify(").push(channel).push("::text, ");
    match key_columns {
        Some(columns) => {
            sql.push("CASE WHEN octet_length(\"p\".\"k\") + octet_length(")
                .push(&table_ref)
                .push(") < ")
                .push(&PAYLOAD_LIMIT.to_string())
                .push(" THEN '")
                .push(VERSION)
                .push(" ' || \"p\".\"k\" || ' ' || ")
                .push(&table_ref)
                .push(" ELSE '")
                .push(VERSION)
                .push(" * ' || ")
                .push(&table_ref)
                .push(" END) FROM (SELECT string_agg(");
            let prefix = format!("{}.", crate::base::sql::quote_ident(rows));
            push_key_text::<K>(sql, &prefix, columns);
            sql.push(", ';') AS \"k\" FROM ")
                .ident(rows)
                .push(") AS \"p\" WHERE \"p\".\"k\" IS NOT NULL");
        }
        None => {
            sql.push("'")
                .push(VERSION)
                .push(" * ' || ")
                .push(&table_ref)
                .push(") FROM (SELECT 1 FROM ")
                .ident(rows)
                .push(" LIMIT 1) AS \"p\"");
        }
    }
}

/// Writes the trigger statement sending one row's invalidation:
/// `PERFORM pg_notify('<channel>', ..)` with the key of `row` (`NEW` or `OLD`).
/// `channel` must be a plain name ([`valid_channel`]): it is written as a literal.
pub(crate) fn push_notify_row<K: Key>(
    sql: &mut SqlBuf,
    channel: &str,
    row: &str,
    key_columns: &[&str],
) {
    sql.push("PERFORM pg_notify('").push(channel).push("', ");
    sql.push("CASE WHEN octet_length(");
    push_key_text::<K>(sql, &format!("{row}."), key_columns);
    sql.push(") + octet_length(TG_TABLE_NAME) < ")
        .push(&PAYLOAD_LIMIT.to_string())
        .push(" THEN '")
        .push(VERSION)
        .push(" ' || ");
    push_key_text::<K>(sql, &format!("{row}."), key_columns);
    sql.push(" || ' ' || TG_TABLE_NAME ELSE '")
        .push(VERSION)
        .push(" * ' || TG_TABLE_NAME END);");
}

/// Writes the trigger statement invalidating a whole table (`TRUNCATE`).
pub(crate) fn push_notify_table(sql: &mut SqlBuf, channel: &str) {
    sql.push("PERFORM pg_notify('")
        .push(channel)
        .push("', '")
        .push(VERSION)
        .push(" * ' || TG_TABLE_NAME);");
}

/// The payload a listener sends itself to learn it has heard everything committed
/// before: `sync <token> <n>`, `token` telling listeners on one channel apart. Every
/// other listener ignores it.
pub(crate) fn sync_payload(token: u64, n: u64) -> String {
    format!("sync {token} {n}")
}

/// Reads a [`sync_payload`]: `Some((token, n))`.
pub(crate) fn parse_sync(payload: &str) -> Option<(u64, u64)> {
    let (token, n) = payload.strip_prefix("sync ")?.split_once(' ')?;
    Some((token.parse().ok()?, n.parse().ok()?))
}

/// Whether `channel` is a name written as is in `LISTEN` and trigger bodies: ASCII
/// letters, digits and `_`, not starting with a digit, at most 63 bytes.
pub(crate) fn valid_channel(channel: &str) -> bool {
    !channel.is_empty()
        && channel.len() <= 63
        && !channel.starts_with(|c: char| c.is_ascii_digit())
        && channel
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_keys() {
        let inv = Invalidation::parse("1 000000000000002a;0000000000000007 orders").unwrap();
        assert_eq!(inv.table, "orders");
        assert_eq!(inv.keys_as::<i64>(), Some(vec![42, 7]));
        let inv = Invalidation::parse("1 0000002a,616263 my table").unwrap();
        assert_eq!(inv.table, "my table");
        assert_eq!(
            inv.keys_as::<(i32, String)>(),
            Some(vec![(42, "abc".to_owned())])
        );
        // A key of another shape does not decode: the caller evicts the whole model.
        assert_eq!(inv.keys_as::<i64>(), None);
        let whole = Invalidation::parse("1 * orders").unwrap();
        assert_eq!(whole.keys, None);
        assert_eq!(parse_sync(&sync_payload(7, 9)), Some((7, 9)));
        assert_eq!(parse_sync("1 * sync"), None);
        for bad in [
            "", "1", "1 *", "2 * t", "1 0g t", "1 abc t", "1 * ", "sync 1 2",
        ] {
            assert_eq!(Invalidation::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channels_are_plain_names() {
        assert!(valid_channel("matrx_orm_cache"));
        for bad in ["", "1a", "a-b", "a'b", "a b", &"x".repeat(64)] {
            assert!(!valid_channel(bad), "{bad:?}");
        }
    }
}
