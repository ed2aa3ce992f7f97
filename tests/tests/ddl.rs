//! `ddl::create_tables` / `drop_tables` on the shop models, checked in the catalogs:
//! tables, composite primary and foreign keys, junction tables, indexes.

mod common;
mod fixtures;

use std::collections::BTreeSet;

use common::shop::*;
use fixtures::*;
use matrx_orm::prelude::*;
use matrx_orm::{ddl, Error};

const SHOP_TABLES: [&str; 9] = [
    "customers",
    "order_items",
    "order_tags",
    "orders",
    "product_warehouses",
    "products",
    "stock",
    "tags",
    "warehouses",
];

async fn tables(db: &Db) -> BTreeSet<String> {
    db.query_sql(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[derive(Debug, PartialEq)]
struct Constraint {
    name: String,
    kind: String,
    table: String,
    columns: Vec<String>,
    references: Option<String>,
    ref_columns: Vec<String>,
}

async fn constraints(db: &Db) -> Vec<Constraint> {
    let rows = db
        .query_sql(
            "SELECT con.conname::text, con.contype::text, rel.relname::text, \
               ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i), \
               frel.relname::text, \
               ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
                     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) \
             FROM pg_constraint con \
             JOIN pg_class rel ON rel.oid = con.conrelid \
             JOIN pg_namespace ns ON ns.oid = rel.relnamespace \
             LEFT JOIN pg_class frel ON frel.oid = con.confrelid \
             WHERE ns.nspname = current_schema() AND con.contype IN ('p', 'f', 'u') \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| Constraint {
            name: r.get(0),
            kind: r.get(1),
            table: r.get(2),
            columns: r.get(3),
            references: r.get(4),
            ref_columns: r.get(5),
        })
        .collect()
}

/// (index name, table, columns in order).
async fn indexes(db: &Db) -> Vec<(String, String, Vec<String>)> {
    db.query_sql(
        "SELECT i.relname::text, t.relname::text, \
           ARRAY(SELECT a.attname::text FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(n, o) \
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o) \
         FROM pg_index ix \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = current_schema() ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn find<'a>(all: &'a [Constraint], name: &str) -> &'a Constraint {
    all.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no constraint {name} in {all:#?}"))
}

#[tokio::test]
async fn create_tables_makes_tables_keys_and_junctions() {
    let db = common::test_db("ddl_create").await;
    ddl::create_tables(&*db, &models()).await.unwrap();
    let expected: BTreeSet<String> = SHOP_TABLES.iter().map(|s| s.to_string()).collect();
    assert_eq!(tables(&db).await, expected);

    let all = constraints(&db).await;
    // Primary keys, composite ones in key order.
    let pk = |table: &str| {
        all.iter()
            .find(|c| c.kind == "p" && c.table == table)
            .unwrap_or_else(|| panic!("no pk on {table}"))
    };
    assert_eq!(pk("customers").columns, strings(&["id"]));
    assert_eq!(pk("warehouses").columns, strings(&["region", "code"]));
    assert_eq!(
        pk("stock").columns,
        strings(&["product_id", "region", "code"])
    );
    assert_eq!(pk("order_tags").columns, strings(&["order_id", "tag_id"]));
    assert_eq!(
        pk("product_warehouses").columns,
        strings(&["product_id", "region", "code"])
    );

    // Foreign keys, the composite one included.
    let fk = find(&all, "stock_warehouse_fkey");
    assert_eq!((fk.kind.as_str(), fk.table.as_str()), ("f", "stock"));
    assert_eq!(fk.columns, strings(&["region", "code"]));
    assert_eq!(fk.references.as_deref(), Some("warehouses"));
    assert_eq!(fk.ref_columns, strings(&["region", "code"]));
    let expected_fks = [
        (
            "customers_referrer_fkey",
            "customers",
            &["referred_by"][..],
            "customers",
            &["id"][..],
        ),
        (
            "orders_customer_fkey",
            "orders",
            &["customer_id"],
            "customers",
            &["id"],
        ),
        (
            "order_items_order_fkey",
            "order_items",
            &["order_id"],
            "orders",
            &["id"],
        ),
        (
            "order_items_product_fkey",
            "order_items",
            &["product_id"],
            "products",
            &["id"],
        ),
        (
            "stock_product_fkey",
            "stock",
            &["product_id"],
            "products",
            &["id"],
        ),
        (
            "order_tags_source_fkey",
            "order_tags",
            &["order_id"],
            "orders",
            &["id"],
        ),
        (
            "order_tags_target_fkey",
            "order_tags",
            &["tag_id"],
            "tags",
            &["id"],
        ),
        (
            "product_warehouses_source_fkey",
            "product_warehouses",
            &["product_id"],
            "products",
            &["id"],
        ),
        (
            "product_warehouses_target_fkey",
            "product_warehouses",
            &["region", "code"],
            "warehouses",
            &["region", "code"],
        ),
    ];
    for (name, table, cols, target, target_cols) in expected_fks {
        let c = find(&all, name);
        assert_eq!(
            (
                c.kind.as_str(),
                c.table.as_str(),
                c.columns.clone(),
                c.references.as_deref(),
                c.ref_columns.clone()
            ),
            (
                "f",
                table,
                strings(cols),
                Some(target),
                strings(target_cols)
            ),
            "{name}"
        );
    }
    assert_eq!(
        all.iter().filter(|c| c.kind == "f").count(),
        10,
        "no other foreign key"
    );

    // Unique columns.
    for (name, table, col) in [
        ("customers_email_key", "customers", "email"),
        ("products_sku_key", "products", "sku"),
        ("tags_name_key", "tags", "name"),
    ] {
        let c = find(&all, name);
        assert_eq!(
            (c.kind.as_str(), c.table.as_str(), c.columns.clone()),
            ("u", table, strings(&[col]))
        );
    }

    // Identity keys, nullable columns as declared.
    let columns = db
        .query_sql(
            "SELECT table_name::text, column_name::text, is_identity::text, is_nullable::text \
             FROM information_schema.columns WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap();
    let col = |t: &str, c: &str| {
        let r = columns
            .iter()
            .find(|r| r.get::<_, String>(0) == t && r.get::<_, String>(1) == c)
            .unwrap_or_else(|| panic!("no column {t}.{c}"));
        (r.get::<_, String>(2), r.get::<_, String>(3))
    };
    assert_eq!(col("customers", "id"), ("YES".into(), "NO".into()));
    assert_eq!(col("customers", "referred_by"), ("NO".into(), "YES".into()));
    assert_eq!(col("warehouses", "code"), ("NO".into(), "NO".into()));
    assert_eq!(col("order_tags", "tag_id"), ("NO".into(), "NO".into()));
}

#[tokio::test]
async fn every_foreign_key_is_covered_by_an_index() {
    let db = common::test_db("ddl_fk_indexes").await;
    ddl::create_tables(&*db, &models()).await.unwrap();
    let idx = indexes(&db).await;
    let fks: Vec<Constraint> = constraints(&db)
        .await
        .into_iter()
        .filter(|c| c.kind == "f")
        .collect();
    assert_eq!(fks.len(), 10);
    for fk in &fks {
        let covered = idx.iter().any(|(_, table, cols)| {
            table == &fk.table
                && cols.len() >= fk.columns.len()
                && cols[..fk.columns.len()] == fk.columns[..]
        });
        assert!(
            covered,
            "{} on {}({:?}) has no index: {idx:#?}",
            fk.name, fk.table, fk.columns
        );
    }
    // The named FK indexes.
    for (name, table, cols) in [
        ("orders_customer_id_idx", "orders", &["customer_id"][..]),
        ("stock_region_code_idx", "stock", &["region", "code"]),
        ("order_items_order_id_idx", "order_items", &["order_id"]),
        ("order_items_product_id_idx", "order_items", &["product_id"]),
        ("customers_referred_by_idx", "customers", &["referred_by"]),
        ("order_tags_tag_id_idx", "order_tags", &["tag_id"]),
        (
            "product_warehouses_region_code_idx",
            "product_warehouses",
            &["region", "code"],
        ),
    ] {
        let found = idx
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no index {name}"));
        assert_eq!(
            (found.1.as_str(), found.2.clone()),
            (table, strings(cols)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_created_schema_enforces_its_keys() {
    let db = shop_db("ddl_enforced").await;
    let o_err = db
        .execute_sql("INSERT INTO order_tags VALUES (1, 1)", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&o_err, Error::ForeignKeyViolation { constraint, .. } if constraint == "order_tags_source_fkey"),
        "{o_err:?}"
    );
    let p = product("s", "p", 1).insert(&*db).await.unwrap();
    let err = db
        .execute_sql(
            "INSERT INTO product_warehouses VALUES ($1, 'af', 1)",
            &[&p.id],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKeyViolation { constraint, .. } if constraint == "product_warehouses_target_fkey"),
        "{err:?}"
    );
    warehouse("af", 1, "w").insert(&*db).await.unwrap();
    db.execute_sql(
        "INSERT INTO product_warehouses VALUES ($1, 'af', 1)",
        &[&p.id],
    )
    .await
    .unwrap();
    let err = db
        .execute_sql(
            "INSERT INTO product_warehouses VALUES ($1, 'af', 1)",
            &[&p.id],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UniqueViolation { constraint, .. } if constraint == "product_warehouses_pkey"),
        "{err:?}"
    );
}

#[tokio::test]
async fn drop_tables_removes_everything_and_is_repeatable() {
    let db = common::test_db("ddl_drop").await;
    ddl::create_tables(&*db, &models()).await.unwrap();
    customer("a", "a@x").insert(&*db).await.unwrap();
    ddl::drop_tables(&*db, &models()).await.unwrap();
    assert!(tables(&db).await.is_empty(), "junction tables too");
    assert!(indexes(&db).await.is_empty());
    ddl::drop_tables(&*db, &models()).await.unwrap();
    // And back again, empty.
    ddl::create_tables(&*db, &models()).await.unwrap();
    assert_eq!(tables(&db).await.len(), 9);
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 0);
    // Dropping some models only drops theirs (and their junctions), cascading FKs.
    ddl::drop_tables(&*db, &[Tag::META, Order::META])
        .await
        .unwrap();
    let left: Vec<String> = tables(&db).await.into_iter().collect();
    assert_eq!(
        left,
        strings(&[
            "customers",
            "order_items",
            "product_warehouses",
            "products",
            "stock",
            "warehouses"
        ])
    );
}

#[tokio::test]
async fn the_order_of_models_does_not_matter() {
    let db = common::test_db("ddl_order").await;
    let mut reversed = models();
    reversed.reverse();
    ddl::create_tables(&*db, &reversed).await.unwrap();
    assert_eq!(tables(&db).await.len(), 9);
    assert_eq!(
        constraints(&db)
            .await
            .iter()
            .filter(|c| c.kind == "f")
            .count(),
        10
    );
}

#[tokio::test]
async fn create_tables_twice_is_idempotent() {
    let db = common::test_db("ddl_twice").await;
    ddl::create_tables(&*db, &models()).await.unwrap();
    customer("a", "a@x").insert(&*db).await.unwrap();
    let before = constraints(&db).await;
    let again = ddl::create_tables(&*db, &models()).await;
    assert!(again.is_ok(), "second create_tables failed: {again:?}");
    assert_eq!(constraints(&db).await, before, "nothing added twice");
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 1, "data kept");
}

#[tokio::test]
async fn create_tables_is_atomic() {
    let db = common::test_db("ddl_atomic").await;
    // Orders reference customers, which are not in the list: the FK fails, and the
    // orders table created before it in the same call is rolled back.
    let err = ddl::create_tables(&*db, &[Order::META]).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("42P01"), "{err}");
    assert!(tables(&db).await.is_empty(), "{:?}", tables(&db).await);
}

/// Long table and column names: PostgreSQL cuts identifiers at 63 bytes, so two
/// generated names sharing a long prefix must still name two different objects.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "a_table_with_a_rather_long_descriptive_name_for_events")]
pub struct LongNames {
    #[orm(primary_key, auto)]
    pub id: i64,
    #[orm(index)]
    pub recorded_at_timestamp_first: i64,
    #[orm(index)]
    pub recorded_at_timestamp_second: i64,
}

#[tokio::test]
async fn generated_index_names_do_not_collide_when_truncated() {
    let db = common::test_db("ddl_long_names").await;
    ddl::create_tables(&*db, &[LongNames::META]).await.unwrap();
    let idx = indexes(&db).await;
    for col in [
        "recorded_at_timestamp_first",
        "recorded_at_timestamp_second",
    ] {
        assert!(
            idx.iter().any(|(_, _, cols)| cols == &strings(&[col])),
            "no index on {col}: {idx:#?}"
        );
    }
}
