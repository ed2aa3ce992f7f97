//! The W1 and W3 checksums of `shared/bench/WORKLOADS.md`, walked over a loaded graph
//! and computed in plain SQL, shared by the prefetch and select_related count tests.

use matrx_orm::prelude::*;

use crate::common::shop::*;

/// The W1 checksum keys, walked over the loaded graph (panics on a missing relation).
pub fn w1_walk(orders: &[Order]) -> Vec<i64> {
    let mut v = vec![0i64; 11];
    for o in orders {
        v[0] += 1;
        v[1] += o.id;
        let c = o.customer.get().expect("customer loaded");
        assert_eq!(c.id, o.customer_id);
        v[2] += c.id;
        v[3] += c.email.chars().count() as i64;
        for (pos, it) in o.items.get().expect("items loaded").iter().enumerate() {
            assert_eq!(it.order_id, o.id);
            v[4] += 1;
            v[5] += it.quantity as i64 * it.unit_price_cents as i64;
            v[6] += (pos as i64 + 1) * it.id;
            let p = it.product.get().expect("product loaded");
            assert_eq!(p.id, it.product_id);
            v[7] += p.price_cents as i64;
        }
        for (pos, t) in o.tags.get().expect("tags loaded").iter().enumerate() {
            v[8] += 1;
            v[9] += t.id;
            v[10] += (pos as i64 + 1) * t.id;
        }
    }
    v
}

/// The same keys computed by the database for the orders with `id <= max_id`.
pub async fn w1_sql(db: &Db, max_id: i64) -> Vec<i64> {
    let rows = db
        .query_sql(
            "WITH o AS (
                 SELECT o.id, o.customer_id, c.email FROM orders o
                 JOIN customers c ON c.id = o.customer_id WHERE o.id <= $1),
             i AS (
                 SELECT i.id, i.quantity, i.unit_price_cents, p.price_cents,
                        row_number() OVER (PARTITION BY i.order_id ORDER BY i.id) AS pos
                 FROM order_items i JOIN products p ON p.id = i.product_id
                 WHERE i.order_id <= $1),
             t AS (
                 SELECT ot.tag_id,
                        row_number() OVER (PARTITION BY ot.order_id ORDER BY ot.tag_id) AS pos
                 FROM order_tags ot WHERE ot.order_id <= $1)
             SELECT (SELECT count(*) FROM o),
                    (SELECT coalesce(sum(id), 0) FROM o)::int8,
                    (SELECT coalesce(sum(customer_id), 0) FROM o)::int8,
                    (SELECT coalesce(sum(char_length(email)), 0) FROM o)::int8,
                    (SELECT count(*) FROM i),
                    (SELECT coalesce(sum(quantity::int8 * unit_price_cents), 0) FROM i)::int8,
                    (SELECT coalesce(sum(pos * id), 0) FROM i)::int8,
                    (SELECT coalesce(sum(price_cents), 0) FROM i)::int8,
                    (SELECT count(*) FROM t),
                    (SELECT coalesce(sum(tag_id), 0) FROM t)::int8,
                    (SELECT coalesce(sum(pos * tag_id), 0) FROM t)::int8",
            &[&max_id],
        )
        .await
        .unwrap();
    (0..11).map(|i| rows[0].get::<_, i64>(i)).collect()
}

pub fn w3_walk(products: &[Product]) -> Vec<i64> {
    let mut v = vec![0i64; 9];
    for p in products {
        v[0] += 1;
        v[1] += p.id;
        let stock = p.stock.get().expect("stock loaded");
        let keys: Vec<(&str, i32)> = stock.iter().map(|s| (s.region.as_str(), s.code)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "stock by (region, code)");
        for (pos, s) in stock.iter().enumerate() {
            assert_eq!(s.product_id, p.id);
            v[2] += 1;
            v[3] += s.qty as i64;
            v[4] += (pos as i64 + 1) * s.qty as i64;
            let w = s.warehouse.get().expect("warehouse loaded");
            assert_eq!((w.region.as_str(), w.code), (s.region.as_str(), s.code));
            v[5] += w.name.chars().count() as i64;
        }
        let whs = p.warehouses.get().expect("warehouses loaded");
        let keys: Vec<(&str, i32)> = whs.iter().map(|w| (w.region.as_str(), w.code)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "warehouses by (region, code)");
        for (pos, w) in whs.iter().enumerate() {
            v[6] += 1;
            v[7] += w.name.chars().count() as i64;
            v[8] += (pos as i64 + 1) * w.code as i64;
        }
    }
    v
}

pub async fn w3_sql(db: &Db) -> Vec<i64> {
    let rows = db
        .query_sql(
            "WITH s AS (
                 SELECT s.qty, w.name,
                        row_number() OVER (PARTITION BY s.product_id ORDER BY s.region, s.code) AS pos
                 FROM stock s JOIN warehouses w ON (w.region, w.code) = (s.region, s.code)),
             pw AS (
                 SELECT w.code, w.name,
                        row_number() OVER (PARTITION BY pw.product_id ORDER BY pw.region, pw.code) AS pos
                 FROM product_warehouses pw
                 JOIN warehouses w ON (w.region, w.code) = (pw.region, pw.code))
             SELECT (SELECT count(*) FROM products),
                    (SELECT coalesce(sum(id), 0) FROM products)::int8,
                    (SELECT count(*) FROM s),
                    (SELECT coalesce(sum(qty), 0) FROM s)::int8,
                    (SELECT coalesce(sum(pos * qty), 0) FROM s)::int8,
                    (SELECT coalesce(sum(char_length(name)), 0) FROM s)::int8,
                    (SELECT count(*) FROM pw),
                    (SELECT coalesce(sum(char_length(name)), 0) FROM pw)::int8,
                    (SELECT coalesce(sum(pos * code), 0) FROM pw)::int8",
            &[],
        )
        .await
        .unwrap();
    (0..9).map(|i| rows[0].get::<_, i64>(i)).collect()
}
