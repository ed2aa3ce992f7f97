//! The resolved server answers, and test schemas are unique and cleaned up.

use std::collections::HashSet;
use std::error::Error;

use matrx_orm_testkit::{connect, server, TestSchema};
use tokio_postgres::Client;

type TestResult = Result<(), Box<dyn Error>>;

async fn schema_exists(client: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn server_answers_select_1() -> TestResult {
    let server = server().await?;
    let client = connect(server.url()).await?;
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    assert!(server.major_version() >= 10, "{server:?}");
    Ok(())
}

#[tokio::test]
async fn server_is_resolved_once() -> TestResult {
    let first = server().await?;
    let second = server().await?;
    assert!(std::ptr::eq(first, second));
    Ok(())
}

#[tokio::test]
async fn schemas_are_distinct_and_removed_by_drop_now_and_drop() -> TestResult {
    let client = connect(server().await?.url()).await?;
    let explicit = TestSchema::create("testkit_explicit").await?;
    let implicit = TestSchema::create("testkit_implicit").await?;
    let (explicit_name, implicit_name) = (explicit.name().to_owned(), implicit.name().to_owned());
    assert_ne!(explicit_name, implicit_name);
    assert!(schema_exists(&client, &explicit_name).await?);
    assert!(schema_exists(&client, &implicit_name).await?);

    explicit.drop_now().await?;
    assert!(!schema_exists(&client, &explicit_name).await?);

    // Dropped inside this current-thread runtime, which must not panic or hang.
    drop(implicit);
    assert!(!schema_exists(&client, &implicit_name).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_removes_tables_in_a_multi_thread_runtime() -> TestResult {
    let client = connect(server().await?.url()).await?;
    let schema = TestSchema::create("testkit_multi").await?;
    let name = schema.name().to_owned();
    let table = format!("{}.items", matrx_orm_testkit::quote_ident(&name));
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)"
        ))
        .await?;
    drop(schema);
    assert!(!schema_exists(&client, &name).await?);
    Ok(())
}

#[test]
fn drop_works_outside_any_runtime() -> TestResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let schema = runtime.block_on(TestSchema::create("testkit_no_runtime"))?;
    let name = schema.name().to_owned();
    drop(schema);
    runtime.block_on(async {
        let client = connect(server().await?.url()).await?;
        assert!(!schema_exists(&client, &name).await?);
        Ok(())
    })
}

#[tokio::test]
async fn many_schemas_get_unique_sanitized_names() -> TestResult {
    let mut names = HashSet::new();
    for _ in 0..10 {
        let schema = TestSchema::create("Many Schemas / Ünïcode!").await?;
        assert!(
            schema.name().starts_with("many_schemas_"),
            "{}",
            schema.name()
        );
        assert!(schema.name().len() <= 63);
        assert!(schema
            .name()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert!(names.insert(schema.name().to_owned()));
        schema.drop_now().await?;
    }
    Ok(())
}
