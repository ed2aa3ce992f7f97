//! Workload checksums: the [`Checksums`] type, the published expected values
//! of WORKLOADS.md, the checksum SQL of `checksums.sql`, and comparison.

use std::collections::BTreeMap;
use std::fmt;

use tokio_postgres::Client;

use crate::error::{BenchError, Result};
use crate::workload::{Workload, WorkloadParams};

/// An ordered `key -> value` map of one workload's checksums.
///
/// Keys keep their insertion order (the WORKLOADS.md order) for printing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksums {
    entries: Vec<(String, i64)>,
}

impl Checksums {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map from `(key, value)` pairs, in that order (a repeated key keeps
    /// its first position and its last value).
    pub fn from_pairs<K: Into<String>>(pairs: impl IntoIterator<Item = (K, i64)>) -> Self {
        let mut c = Self::new();
        for (k, v) in pairs {
            c.insert(k, v);
        }
        c
    }

    /// Sets `key` to `value` (appended if new, replaced in place otherwise).
    pub fn insert(&mut self, key: impl Into<String>, value: i64) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The `(key, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the values of `other` key by key (keys missing here are appended).
    pub fn add(&mut self, other: &Checksums) {
        for (k, v) in other.iter() {
            let sum = self.get(k).unwrap_or(0) + v;
            self.insert(k, sum);
        }
    }
}

impl fmt::Display for Checksums {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// One key whose value differs between the expected and the actual map
/// (`None`: the key is missing on that side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The checksum key.
    pub key: String,
    /// The expected value.
    pub expected: Option<i64>,
    /// The value found.
    pub actual: Option<i64>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<i64>| v.map_or_else(|| "missing".to_string(), |v| v.to_string());
        write!(
            f,
            "{}: expected {}, got {}",
            self.key,
            show(self.expected),
            show(self.actual)
        )
    }
}

/// Lists every key whose value differs (or that is missing on one side),
/// expected keys first in their order, then keys only present in `actual`.
pub fn compare(expected: &Checksums, actual: &Checksums) -> Vec<Mismatch> {
    let mut out: Vec<Mismatch> = expected
        .iter()
        .filter(|&(k, v)| actual.get(k) != Some(v))
        .map(|(k, v)| Mismatch {
            key: k.to_string(),
            expected: Some(v),
            actual: actual.get(k),
        })
        .collect();
    out.extend(
        actual
            .iter()
            .filter(|(k, _)| expected.get(k).is_none())
            .map(|(k, v)| Mismatch {
                key: k.to_string(),
                expected: None,
                actual: Some(v),
            }),
    );
    out
}

/// Checksums of several workloads.
pub type WorkloadChecksums = BTreeMap<Workload, Checksums>;

/// The expected values of the full dataset, copied from the ```checksums
/// block of WORKLOADS.md (a unit test keeps the two in sync).
pub const EXPECTED_FULL: &[(&str, &str, i64)] = &[
    ("w1", "orders", 1000),
    ("w1", "order_id_sum", 500500),
    ("w1", "customer_id_sum", 998901),
    ("w1", "customer_email_len_sum", 23453),
    ("w1", "items", 4955),
    ("w1", "item_value_sum", 659126575),
    ("w1", "item_pos_sum", 49402437),
    ("w1", "product_price_sum", 244654397),
    ("w1", "tag_links", 1931),
    ("w1", "tag_id_sum", 48972),
    ("w1", "tag_pos_sum", 110115),
    ("w2", "orders", 20000),
    ("w2", "order_id_sum", 200010000),
    ("w2", "customer_id_sum", 19868346),
    ("w2", "customer_email_len_sum", 468839),
    ("w2", "items", 100261),
    ("w2", "item_value_sum", 13528411759),
    ("w2", "item_pos_sum", 20124361816),
    ("w2", "product_price_sum", 4969722001),
    ("w2", "tag_links", 40440),
    ("w2", "tag_id_sum", 1026659),
    ("w2", "tag_pos_sum", 2334108),
    ("w3", "products", 1000),
    ("w3", "product_id_sum", 500500),
    ("w3", "stock_rows", 3042),
    ("w3", "stock_qty_sum", 766080),
    ("w3", "stock_pos_qty_sum", 2067338),
    ("w3", "stock_wh_name_len_sum", 30280),
    ("w3", "pw_links", 2471),
    ("w3", "pw_wh_name_len_sum", 24623),
    ("w3", "pw_pos_code_sum", 14770),
    ("w4", "orders", 1600),
    ("w4", "order_id_sum", 1280800),
    ("w4", "customer_id_sum", 1605141),
    ("w4", "customer_email_len_sum", 37519),
    ("w4", "tag_links", 3196),
    ("w4", "tag_id_sum", 80122),
    ("w4", "tag_pos_sum", 182485),
    ("w5", "orders", 1600),
    ("w5", "order_id_sum", 1280800),
    ("w5", "customer_id_sum", 1605141),
    ("w5", "referrers", 770),
    ("w5", "referrer_id_sum", 384091),
    ("w5", "referrer_email_len_sum", 17665),
    ("w5", "items", 7974),
    ("w5", "item_value_sum", 1067136864),
    ("w5", "product_price_sum", 392984074),
];

/// The expected checksums of the full dataset ([`EXPECTED_FULL`]).
pub fn expected_full() -> WorkloadChecksums {
    let mut out = WorkloadChecksums::new();
    for &(w, k, v) in EXPECTED_FULL {
        if let Some(workload) = Workload::parse(w) {
            out.entry(workload).or_default().insert(k, v);
        }
    }
    out
}

/// Parses the ```checksums block of a WORKLOADS.md text into
/// `(workload, key, value)` triples.
pub fn parse_checksum_block(markdown: &str) -> Result<Vec<(String, String, i64)>> {
    let mut lines = markdown.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == "```checksums")
        .ok_or_else(|| BenchError::other("no ```checksums block"))?;
    let mut out = Vec::new();
    for line in lines {
        let line = line.trim();
        if line == "```" {
            return Ok(out);
        }
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [w, k, v] = parts[..] else {
            return Err(BenchError::other(format!("bad checksum line {line:?}")));
        };
        let v = v
            .parse::<i64>()
            .map_err(|e| BenchError::other(format!("bad checksum value in {line:?}: {e}")))?;
        out.push((w.to_string(), k.to_string(), v));
    }
    Err(BenchError::other("unterminated ```checksums block"))
}

/// The checksum query of `checksums.sql` (schema `shop`, full-scale workload
/// sizes); see [`checksum_sql`] for the adapted text.
pub const CHECKSUM_SQL: &str = r#"
WITH sets(workload, max_order) AS (
    VALUES ('w1', (SELECT max(id) FROM (SELECT id FROM shop.orders ORDER BY id LIMIT 1000) s)),
           ('w2', (SELECT max(id) FROM shop.orders)),
           ('w4', 1600::bigint)
),
o AS (
    SELECT s.workload, o.id, o.customer_id, c.email
    FROM sets s
    JOIN shop.orders o ON o.id <= s.max_order
    JOIN shop.customers c ON c.id = o.customer_id
),
i AS (
    SELECT o.workload, i.id, i.quantity, i.unit_price_cents, p.price_cents,
           row_number() OVER (PARTITION BY o.workload, i.order_id ORDER BY i.id) AS pos
    FROM o
    JOIN shop.order_items i ON i.order_id = o.id
    JOIN shop.products p ON p.id = i.product_id
    WHERE o.workload IN ('w1', 'w2')
),
t AS (
    SELECT o.workload, ot.tag_id, tg.name,
           row_number() OVER (PARTITION BY o.workload, ot.order_id ORDER BY ot.tag_id) AS pos
    FROM o
    JOIN shop.order_tags ot ON ot.order_id = o.id
    JOIN shop.tags tg ON tg.id = ot.tag_id
),
order_sums AS (
    SELECT workload,
           count(*)                     AS orders,
           sum(id)                      AS order_id_sum,
           sum(customer_id)             AS customer_id_sum,
           sum(char_length(email))      AS customer_email_len_sum
    FROM o GROUP BY workload
),
item_sums AS (
    SELECT workload,
           count(*)                                    AS items,
           sum(quantity::bigint * unit_price_cents)    AS item_value_sum,
           sum(pos * id)                               AS item_pos_sum,
           sum(price_cents)                            AS product_price_sum
    FROM i GROUP BY workload
),
tag_sums AS (
    SELECT workload,
           count(*)          AS tag_links,
           sum(tag_id)       AS tag_id_sum,
           sum(pos * tag_id) AS tag_pos_sum
    FROM t GROUP BY workload
),
w3_stock AS (
    SELECT s.qty, w.name,
           row_number() OVER (PARTITION BY s.product_id ORDER BY s.region, s.code) AS pos
    FROM shop.stock s
    JOIN shop.warehouses w ON (w.region, w.code) = (s.region, s.code)
),
w3_pw AS (
    SELECT w.code, w.name,
           row_number() OVER (PARTITION BY pw.product_id ORDER BY pw.region, pw.code) AS pos
    FROM shop.product_warehouses pw
    JOIN shop.warehouses w ON (w.region, w.code) = (pw.region, pw.code)
),
w5_o AS (
    SELECT o.id, c.id AS customer_id, r.id AS referrer_id, r.email AS referrer_email
    FROM shop.orders o
    JOIN shop.customers c ON c.id = o.customer_id
    LEFT JOIN shop.customers r ON r.id = c.referred_by
    WHERE o.id <= 1600
),
w5_i AS (
    SELECT i.quantity, i.unit_price_cents, p.price_cents
    FROM shop.order_items i
    JOIN shop.products p ON p.id = i.product_id
    WHERE i.order_id <= 1600
),
kv(workload, ord, key, value) AS (
    SELECT workload, 1, 'orders', orders FROM order_sums
    UNION ALL SELECT workload, 2, 'order_id_sum', order_id_sum FROM order_sums
    UNION ALL SELECT workload, 3, 'customer_id_sum', customer_id_sum FROM order_sums
    UNION ALL SELECT workload, 4, 'customer_email_len_sum', customer_email_len_sum FROM order_sums
    UNION ALL SELECT workload, 5, 'items', items FROM item_sums
    UNION ALL SELECT workload, 6, 'item_value_sum', item_value_sum FROM item_sums
    UNION ALL SELECT workload, 7, 'item_pos_sum', item_pos_sum FROM item_sums
    UNION ALL SELECT workload, 8, 'product_price_sum', product_price_sum FROM item_sums
    UNION ALL SELECT workload, 9, 'tag_links', tag_links FROM tag_sums
    UNION ALL SELECT workload, 10, 'tag_id_sum', tag_id_sum FROM tag_sums
    UNION ALL SELECT workload, 11, 'tag_pos_sum', tag_pos_sum FROM tag_sums
    UNION ALL SELECT 'w3', 1, 'products', count(*) FROM shop.products
    UNION ALL SELECT 'w3', 2, 'product_id_sum', sum(id) FROM shop.products
    UNION ALL SELECT 'w3', 3, 'stock_rows', count(*) FROM w3_stock
    UNION ALL SELECT 'w3', 4, 'stock_qty_sum', sum(qty) FROM w3_stock
    UNION ALL SELECT 'w3', 5, 'stock_pos_qty_sum', sum(pos * qty) FROM w3_stock
    UNION ALL SELECT 'w3', 6, 'stock_wh_name_len_sum', sum(char_length(name)) FROM w3_stock
    UNION ALL SELECT 'w3', 7, 'pw_links', count(*) FROM w3_pw
    UNION ALL SELECT 'w3', 8, 'pw_wh_name_len_sum', sum(char_length(name)) FROM w3_pw
    UNION ALL SELECT 'w3', 9, 'pw_pos_code_sum', sum(pos * code) FROM w3_pw
    UNION ALL SELECT 'w5', 1, 'orders', count(*) FROM w5_o
    UNION ALL SELECT 'w5', 2, 'order_id_sum', sum(id) FROM w5_o
    UNION ALL SELECT 'w5', 3, 'customer_id_sum', sum(customer_id) FROM w5_o
    UNION ALL SELECT 'w5', 4, 'referrers', count(referrer_id) FROM w5_o
    UNION ALL SELECT 'w5', 5, 'referrer_id_sum', sum(referrer_id) FROM w5_o
    UNION ALL SELECT 'w5', 6, 'referrer_email_len_sum', sum(char_length(referrer_email)) FROM w5_o
    UNION ALL SELECT 'w5', 7, 'items', count(*) FROM w5_i
    UNION ALL SELECT 'w5', 8, 'item_value_sum', sum(quantity::bigint * unit_price_cents) FROM w5_i
    UNION ALL SELECT 'w5', 9, 'product_price_sum', sum(price_cents) FROM w5_i
)
SELECT workload, key, value::bigint AS value
FROM kv
ORDER BY workload, ord;
"#;

/// [`CHECKSUM_SQL`] adapted to `schema` (every `shop.` rewritten) and to the
/// workload sizes of `params` (W1's `LIMIT 1000` and W4/W5's `1600`).
///
/// `schema` must be a plain identifier (see [`crate::db::is_plain_identifier`]).
pub fn checksum_sql(schema: &str, params: &WorkloadParams) -> String {
    CHECKSUM_SQL
        .replace("shop.", &format!("{schema}."))
        .replace("LIMIT 1000", &format!("LIMIT {}", params.w1_orders))
        .replace("1600", &params.task_orders_total().to_string())
}

/// Runs the checksum SQL on `schema` and returns every workload's checksums
/// as the database computes them.
///
/// Every key of [`Workload::checksum_keys`] is present: a SQL `NULL` (a sum
/// over no rows) or a missing row (a workload without items) counts as 0.
pub async fn checksums_from_db(
    client: &Client,
    schema: &str,
    params: &WorkloadParams,
) -> Result<WorkloadChecksums> {
    if !crate::db::is_plain_identifier(schema) {
        return Err(BenchError::other(format!("bad schema name {schema:?}")));
    }
    let rows = client.query(&checksum_sql(schema, params), &[]).await?;
    let mut found: BTreeMap<(String, String), i64> = BTreeMap::new();
    for row in rows {
        let w: String = row.try_get(0)?;
        let k: String = row.try_get(1)?;
        let v: Option<i64> = row.try_get(2)?;
        found.insert((w, k), v.unwrap_or(0));
    }
    let mut out = WorkloadChecksums::new();
    for w in Workload::ALL {
        let mut c = Checksums::new();
        for &k in w.checksum_keys() {
            let v = found
                .remove(&(w.key().to_string(), k.to_string()))
                .unwrap_or(0);
            c.insert(k, v);
        }
        out.insert(w, c);
    }
    if let Some(((w, k), _)) = found.into_iter().next() {
        return Err(BenchError::other(format!(
            "checksum SQL returned an unknown key {w} {k}"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Scale;

    fn shared_file(name: &str) -> Option<String> {
        let path = format!("{}/../../shared/bench/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).ok()
    }

    #[test]
    fn embedded_table_matches_workloads_md() {
        let Some(md) = shared_file("WORKLOADS.md") else {
            eprintln!("../shared/bench/WORKLOADS.md not found; skipped");
            return;
        };
        let parsed = parse_checksum_block(&md).expect("parse checksum block");
        let embedded: Vec<(String, String, i64)> = EXPECTED_FULL
            .iter()
            .map(|&(w, k, v)| (w.to_string(), k.to_string(), v))
            .collect();
        assert_eq!(parsed, embedded);
    }

    /// Removes `--` comments and collapses whitespace.
    fn normalize_sql(sql: &str) -> String {
        sql.lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn embedded_sql_matches_checksums_sql() {
        let Some(sql) = shared_file("checksums.sql") else {
            eprintln!("../shared/bench/checksums.sql not found; skipped");
            return;
        };
        assert_eq!(normalize_sql(CHECKSUM_SQL), normalize_sql(&sql));
    }

    #[test]
    fn embedded_keys_match_workload_keys() {
        let expected = expected_full();
        assert_eq!(expected.len(), 5);
        for (w, c) in &expected {
            let keys: Vec<&str> = c.iter().map(|(k, _)| k).collect();
            assert_eq!(keys, w.checksum_keys(), "{w}");
        }
    }

    #[test]
    fn sql_rewrite() {
        let full = checksum_sql("matrx_bench", &Scale::Full.workload_params());
        assert!(!full.contains("shop."));
        assert_eq!(
            full.matches("matrx_bench.").count(),
            CHECKSUM_SQL.matches("shop.").count()
        );
        assert!(full.contains("LIMIT 1000") && full.contains("<= 1600"));
        let tiny = checksum_sql("matrx_bench_tiny", &Scale::Tiny.workload_params());
        assert!(tiny.contains("LIMIT 50") && tiny.contains("<= 80") && tiny.contains("80::bigint"));
        assert!(!tiny.contains("1600") && !tiny.contains("LIMIT 1000"));
    }

    #[test]
    fn compare_lists_mismatches() {
        let e = Checksums::from_pairs([("a", 1), ("b", 2), ("c", 3)]);
        let a = Checksums::from_pairs([("a", 1), ("b", 5), ("d", 4)]);
        let m = compare(&e, &a);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].to_string(), "b: expected 2, got 5");
        assert_eq!(m[1].to_string(), "c: expected 3, got missing");
        assert_eq!(m[2].to_string(), "d: expected missing, got 4");
        assert!(compare(&e, &e.clone()).is_empty());
    }

    #[test]
    fn parse_block() {
        let md = "x\n```checksums\nw1 orders 3\n\nw2 items -4\n```\n";
        let t = parse_checksum_block(md).unwrap();
        assert_eq!(t[1], ("w2".into(), "items".into(), -4));
        assert!(parse_checksum_block("```checksums\nw1 a\n```").is_err());
        assert!(parse_checksum_block("nothing").is_err());
    }
}
