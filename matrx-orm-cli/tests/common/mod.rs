//! Shared by the CLI's integration tests: a schema per test, the shop schema loaded
//! into it, generation with the schema name normalised, golden files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use matrx_orm::Db;
use matrx_orm_cli::check::line_diff;
use matrx_orm_cli::{generate, introspect, Generated, Options};
use matrx_orm_testkit::{connect, quote_ident, TestSchema};

/// The shared benchmark's schema and seed: `MATRX_SHOP_DIR`, else `../shared/bench`
/// beside the repository (where the benchmark reads them).
pub fn shop_dir() -> PathBuf {
    match std::env::var_os("MATRX_SHOP_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench"),
    }
}

/// A fresh schema and a pool whose `search_path` is that schema.
pub struct TestDb {
    pub db: Db,
    pub schema: TestSchema,
}

pub async fn test_db(prefix: &str) -> TestDb {
    let schema = TestSchema::create(prefix)
        .await
        .expect("create test schema");
    let db = Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(4)
        .connect()
        .await
        .expect("connect to the test server");
    TestDb { db, schema }
}

/// Runs SQL text on the test schema's server with `search_path` set to it.
pub async fn run_sql(t: &TestDb, sql: &str) {
    let client = connect(t.schema.url()).await.expect("connect");
    let sql = format!(
        "SET search_path TO {};\n{sql}",
        quote_ident(t.schema.name())
    );
    client.batch_execute(&sql).await.expect("run SQL");
}

/// `schema.sql` (and `seed.sql` if asked) of the shop, loaded into `t`'s schema
/// instead of `shop`.
pub async fn load_shop(t: &TestDb, seed: bool) {
    let mut files = vec!["schema.sql"];
    if seed {
        files.push("seed.sql");
    }
    let target = format!("{}.", quote_ident(t.schema.name()));
    for file in files {
        let path = shop_dir().join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {} (set MATRX_SHOP_DIR): {e}", path.display()));
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("DROP SCHEMA") && !l.starts_with("CREATE SCHEMA"))
            .map(|l| l.replace("shop.", &target) + "\n")
            .collect();
        run_sql(t, &text).await;
    }
}

/// Introspects `t`'s schema and generates with `options` (its schema replaced by
/// `t`'s), then writes `as_name` wherever the schema name appears.
pub async fn generate_as(t: &TestDb, mut options: Options, as_name: &str) -> Generated {
    let name = t.schema.name().to_owned();
    options.schema = name.clone();
    let catalog = introspect(&t.db, &name).await.expect("introspect");
    let mut generated = generate(&catalog, &options).expect("generate");
    for text in generated.files.values_mut() {
        *text = text.replace(&name, as_name);
    }
    generated
}

pub fn golden_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Asserts `generated` equals the golden files of `name` (byte for byte, same file
/// set). With `MATRX_BLESS=1` the golden files are rewritten instead.
pub fn assert_golden(name: &str, generated: &Generated) {
    let dir = golden_dir(name);
    if std::env::var("MATRX_BLESS").is_ok_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&dir);
        generated.write_to(&dir).expect("write golden files");
        return;
    }
    let drift = matrx_orm_cli::check::compare_dir(generated, &dir).expect("read golden files");
    if !drift.is_empty() {
        let mut message = format!("generated output differs from tests/golden/{name}:\n");
        for d in drift {
            message.push_str(&format!("--- {}\n{}\n", d.file, d.diff));
        }
        panic!("{message}(rerun with MATRX_BLESS=1 to accept)");
    }
}

/// A diff of two texts, for assertions.
pub fn diff(a: &str, b: &str) -> String {
    line_diff(a, b)
}
