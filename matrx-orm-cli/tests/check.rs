//! `check`: the library call compares models' metadata to the database and names
//! each drift; the `matrx-orm check` command compares a generated models directory
//! to a fresh generation and exits 1 with a line diff.

mod common;

#[path = "golden/shop/mod.rs"]
#[allow(dead_code, unused_imports)]
mod models;

use std::process::Command;

use common::*;
use matrx_orm::Model;
use matrx_orm_cli::{check, Drift};
use models::{Customer, Order, OrderItem, Product, Stock, Tag, Warehouse};

fn all_models() -> Vec<&'static matrx_orm::ModelMeta> {
    vec![
        <Customer as Model>::META,
        <Order as Model>::META,
        <OrderItem as Model>::META,
        <Product as Model>::META,
        <Stock as Model>::META,
        <Tag as Model>::META,
        <Warehouse as Model>::META,
    ]
}

#[tokio::test]
async fn check_names_each_drift() {
    let t = test_db("cli_check").await;
    load_shop(&t, false).await;
    let schema = t.schema.name().to_owned();
    let clean = check(&t.db, &schema, &all_models()).await.expect("check");
    assert!(clean.is_clean(), "{clean}");

    run_sql(
        &t,
        "ALTER TABLE orders DROP COLUMN status;
         ALTER TABLE orders ALTER COLUMN total_cents TYPE integer;
         ALTER TABLE customers ALTER COLUMN name DROP NOT NULL;
         ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey;
         ALTER TABLE products ADD COLUMN weight integer NOT NULL;",
    )
    .await;
    let report = check(&t.db, &schema, &all_models()).await.expect("check");
    let s = |v: &str| v.to_owned();
    let fk = |model: &str, relation: &str| Drift::MissingForeignKey {
        model: s(model),
        relation: s(relation),
        table: s("orders"),
        columns: vec![s("customer_id")],
        target_table: s("customers"),
        target_columns: vec![s("id")],
    };
    let expected = vec![
        Drift::Nullability {
            model: s("Customer"),
            table: s("customers"),
            column: s("name"),
            model_nullable: false,
        },
        fk("Customer", "orders"),
        Drift::MissingColumn {
            model: s("Order"),
            table: s("orders"),
            column: s("status"),
        },
        Drift::TypeMismatch {
            model: s("Order"),
            table: s("orders"),
            column: s("total_cents"),
            model_type: s("bigint"),
            database_type: s("integer"),
        },
        fk("Order", "customer"),
        Drift::RequiredColumnNotInModel {
            model: s("Product"),
            table: s("products"),
            column: s("weight"),
        },
    ];
    assert_eq!(report.drift, expected, "{report}");
    let text = report.to_string();
    for needle in [
        "6 difference(s)",
        r#"Order: column "orders"."status" does not exist"#,
        r#"Order: column "orders"."total_cents" is integer in the database, bigint in the model"#,
        r#"Customer: column "customers"."name" is nullable in the database, not an Option in the model"#,
        r#"Order.customer: no foreign key "orders" (customer_id) -> "customers" (id)"#,
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    t.schema.drop_now().await.expect("drop schema");
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_matrx-orm"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run matrx-orm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_command_exits_non_zero_with_a_diff_on_drift() {
    let t = test_db("cli_check_cmd").await;
    load_shop(&t, false).await;
    let dir = std::env::temp_dir().join(format!("matrx-orm-cli-{}", t.schema.name()));
    let dir_s = dir.to_string_lossy().into_owned();
    let url = t.schema.url().to_owned();
    let schema = t.schema.name().to_owned();
    let base = ["--database-url", &url, "--schema", &schema];

    let (code, _, err) = cli(&["generate", "--schema", &schema, "--out", &dir_s]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--database-url") && err.contains("DATABASE_URL"),
        "{err}"
    );

    let (code, out, err) = cli(&[&["generate"][..], &base, &["--out", &dir_s]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(dir.join("mod.rs").exists() && dir.join("order.rs").exists());

    let check_args = [&["check"][..], &base, &["--models", &dir_s]].concat();
    let (code, out, err) = cli(&check_args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("matches"), "{out}");

    run_sql(&t, "ALTER TABLE tags ADD COLUMN color text").await;
    let (code, out, _) = cli(&check_args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--- tag.rs"), "{out}");
    assert!(
        out.contains("+   15     pub color: Option<String>,"),
        "{out}"
    );
    assert!(out.contains("regenerate with:"), "{out}");

    let _ = std::fs::remove_dir_all(&dir);
    t.schema.drop_now().await.expect("drop schema");
}
