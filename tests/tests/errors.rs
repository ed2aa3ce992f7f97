//! Typed errors from real database faults: constraint violations with their real
//! names, decode failures naming model and column, timeouts, pool exhaustion.

mod common;
mod fixtures;

use std::time::Duration;

use common::shop::*;
use fixtures::*;
use matrx_orm::prelude::*;
use matrx_orm::Error;

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "typed")]
pub struct Typed {
    #[orm(primary_key)]
    pub id: i32,
    pub n: i32,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "accounts")]
pub struct Account {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub balance: i32,
}

#[test]
fn the_error_type_is_thread_safe_and_static() {
    fn assert_bounds<T: std::error::Error + Send + Sync + 'static>() {}
    assert_bounds::<Error>();
    assert_eq!(
        Error::NotFound { model: "Customer" }.to_string(),
        "Customer not found"
    );
    assert_eq!(
        Error::MultipleRows {
            model: "Customer",
            count: 2
        }
        .to_string(),
        "expected one Customer, found 2"
    );
}

#[tokio::test]
async fn unique_violations_name_the_constraint() {
    let db = shop_db("errors_unique").await;
    let ann = customer("Ann", "ann@example.com")
        .insert(&*db)
        .await
        .unwrap();
    let err = customer("Other", "ann@example.com")
        .insert(&*db)
        .await
        .unwrap_err();
    match &err {
        Error::UniqueViolation {
            constraint,
            table,
            message,
        } => {
            assert_eq!(constraint, "customers_email_key");
            assert_eq!(table.as_deref(), Some("customers"));
            assert!(
                message.contains("(email)=(ann@example.com)"),
                "detail kept: {message}"
            );
        }
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    assert_eq!(err.sqlstate(), Some("23505"));
    assert!(err.to_string().contains("customers_email_key"), "{err}");
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 1);

    // Through every write path.
    let bob = customer("Bob", "bob@example.com")
        .insert(&*db)
        .await
        .unwrap();
    let err = Customer::query()
        .filter(Customer::ID.eq(bob.id))
        .update()
        .set(Customer::EMAIL, "ann@example.com")
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UniqueViolation { constraint, .. } if constraint == "customers_email_key"),
        "{err:?}"
    );
    let mut bob2 = bob.clone();
    bob2.email = ann.email.clone();
    assert!(matches!(
        bob2.update(&*db).await,
        Err(Error::UniqueViolation { .. })
    ));
    let err = Customer::create()
        .set(Customer::NAME, "x")
        .set(Customer::EMAIL, "ann@example.com")
        .set(Customer::CREATED_AT, ts(0))
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err:?}");
    let err = Customer::insert_many(&*db, &[customer("a", "new@x"), customer("b", "new@x")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err:?}");
    assert_eq!(
        Customer::query().count(&*db).await.unwrap(),
        2,
        "nothing of the failed batch"
    );
    let err = Customer::insert_rows(std::slice::from_ref(&ann))
        .include_auto()
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UniqueViolation { constraint, .. } if constraint == "customers_pkey"),
        "{err:?}"
    );

    // Composite primary keys.
    warehouse("af", 1, "Lagos").insert(&*db).await.unwrap();
    let err = warehouse("af", 1, "again").insert(&*db).await.unwrap_err();
    assert!(
        matches!(&err, Error::UniqueViolation { constraint, .. } if constraint == "warehouses_pkey"),
        "{err:?}"
    );
    let p = product("sku", "Pen", 1).insert(&*db).await.unwrap();
    stock(p.id, "af", 1, 1).insert(&*db).await.unwrap();
    let err = stock(p.id, "af", 1, 2).insert(&*db).await.unwrap_err();
    assert!(
        matches!(&err, Error::UniqueViolation { constraint, .. } if constraint == "stock_pkey"),
        "{err:?}"
    );
}

#[tokio::test]
async fn foreign_key_violations_name_the_constraint() {
    let db = shop_db("errors_fk").await;
    let err = order(999, "new", 1).insert(&*db).await.unwrap_err();
    match &err {
        Error::ForeignKeyViolation {
            constraint,
            table,
            message,
        } => {
            assert_eq!(constraint, "orders_customer_fkey");
            assert_eq!(table.as_deref(), Some("orders"));
            assert!(message.contains("999"), "{message}");
        }
        other => panic!("expected ForeignKeyViolation, got {other:?}"),
    }
    assert_eq!(err.sqlstate(), Some("23503"));

    let mut c = customer("Ann", "ann@x");
    c.referred_by = Some(12345);
    let err = c.insert(&*db).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKeyViolation { constraint, .. } if constraint == "customers_referrer_fkey")
    );

    // Composite foreign key, on insert and on delete of the referenced row.
    let p = product("sku", "Pen", 1).insert(&*db).await.unwrap();
    let err = stock(p.id, "af", 1, 1).insert(&*db).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKeyViolation { constraint, .. } if constraint == "stock_warehouse_fkey"),
        "{err:?}"
    );
    let wh = warehouse("af", 1, "Lagos").insert(&*db).await.unwrap();
    stock(p.id, "af", 1, 1).insert(&*db).await.unwrap();
    let err = wh.delete(&*db).await.unwrap_err();
    match &err {
        Error::ForeignKeyViolation {
            constraint, table, ..
        } => {
            assert_eq!(constraint, "stock_warehouse_fkey");
            assert_eq!(table.as_deref(), Some("stock"), "the referencing table");
        }
        other => panic!("expected ForeignKeyViolation, got {other:?}"),
    }
    assert!(Warehouse::get_or_none(&*db, &("af".into(), 1))
        .await
        .unwrap()
        .is_some());
    let err = Stock::query()
        .update()
        .set(Stock::CODE, 2)
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignKeyViolation { .. }), "{err:?}");
}

#[tokio::test]
async fn check_violations_name_the_constraint() {
    let db = common::test_db("errors_check").await;
    db.batch_execute(
        "CREATE TABLE accounts (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
         balance integer NOT NULL CONSTRAINT balance_non_negative CHECK (balance >= 0))",
    )
    .await
    .unwrap();
    let err = Account::create()
        .set(Account::BALANCE, -1)
        .exec(&*db)
        .await
        .unwrap_err();
    match &err {
        Error::CheckViolation {
            constraint, table, ..
        } => {
            assert_eq!(constraint, "balance_non_negative");
            assert_eq!(table.as_deref(), Some("accounts"));
        }
        other => panic!("expected CheckViolation, got {other:?}"),
    }
    assert_eq!(err.sqlstate(), Some("23514"));
    let mut acct = Account::create()
        .set(Account::BALANCE, 10)
        .exec(&*db)
        .await
        .unwrap();
    let err = Account::query()
        .update()
        .set(Account::BALANCE, -5)
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CheckViolation { .. }));
    acct.balance = -3;
    assert!(matches!(
        acct.update(&*db).await,
        Err(Error::CheckViolation { .. })
    ));
    assert_eq!(acct.balance, -3, "the instance is not refreshed on failure");
    assert_eq!(Account::get(&*db, &acct.id).await.unwrap().balance, 10);
}

#[tokio::test]
async fn not_null_violations_name_the_column() {
    let db = shop_db("errors_not_null").await;
    let err = Customer::create()
        .set(Customer::EMAIL, "x@x")
        .set(Customer::CREATED_AT, ts(0))
        .exec(&*db)
        .await
        .unwrap_err();
    match &err {
        Error::NotNullViolation { column, table, .. } => {
            assert_eq!(column, "name");
            assert_eq!(table.as_deref(), Some("customers"));
        }
        other => panic!("expected NotNullViolation, got {other:?}"),
    }
    assert_eq!(err.sqlstate(), Some("23502"));
    // set_null on a NOT NULL column type-checks; the server refuses it.
    let c = customer("Ann", "ann@x").insert(&*db).await.unwrap();
    let err = Customer::query()
        .update()
        .set_null(Customer::NAME)
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotNullViolation { column, .. } if column == "name"),
        "{err:?}"
    );
    assert_eq!(Customer::get(&*db, &c.id).await.unwrap().name, "Ann");
}

#[tokio::test]
async fn not_found_and_multiple_rows() {
    let db = shop_db("errors_cardinality").await;
    assert!(matches!(
        Customer::get(&*db, &1).await,
        Err(Error::NotFound { model: "Customer" })
    ));
    assert!(matches!(
        Customer::query().one(&*db).await,
        Err(Error::NotFound { model: "Customer" })
    ));
    Customer::insert_many(&*db, &customers(3)).await.unwrap();
    let err = Customer::query().one(&*db).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MultipleRows {
                model: "Customer",
                count: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.sqlstate(), None);
    assert!(matches!(
        Customer::query().one_or_none(&*db).await,
        Err(Error::MultipleRows { .. })
    ));
    assert!(matches!(
        customer("x", "y").delete(&*db).await,
        Err(Error::NotFound { model: "Customer" })
    ));
    let mut ghost = warehouse("no", 0, "ghost");
    assert!(matches!(
        ghost.update(&*db).await,
        Err(Error::NotFound { model: "Warehouse" })
    ));
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_decode_error_naming_model_and_column() {
    let db = common::test_db("errors_decode").await;
    let err = Typed::raw(&*db, "SELECT 1 AS id, 'abc'::text AS n", &[])
        .await
        .unwrap_err();
    match &err {
        Error::Decode {
            model,
            column,
            rust_type,
            pg_type,
            message,
        } => {
            assert_eq!(*model, "Typed");
            assert_eq!(column, "n");
            assert_eq!(*rust_type, "i32");
            assert_eq!(pg_type, "text");
            assert!(!message.is_empty());
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    assert!(err.to_string().contains("Typed.n"), "{err}");

    // A wider integer, a NULL in a non-Option field, a missing column.
    let err = Typed::raw(&*db, "SELECT 1 AS id, 5::bigint AS n", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { column, pg_type, .. } if column == "n" && pg_type == "int8"),
        "{err:?}"
    );
    let err = Typed::raw(&*db, "SELECT 1 AS id, NULL::int AS n", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { column, .. } if column == "n"),
        "{err:?}"
    );
    let err = Typed::raw(&*db, "SELECT 1 AS id", &[]).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { column, pg_type, .. } if column == "n" && pg_type == "<missing>"),
        "{err:?}"
    );

    // The typed query path, when the table does not match the model.
    db.batch_execute("CREATE TABLE typed (id integer PRIMARY KEY, n text NOT NULL); INSERT INTO typed VALUES (1, 'one')")
        .await
        .unwrap();
    let err = Typed::query().all(&*db).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { model: "Typed", column, .. } if column == "n"),
        "{err:?}"
    );
    let err = Typed::get(&*db, &1).await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn server_errors_keep_their_sqlstate() {
    let db = common::test_db("errors_sqlstate").await;
    let err = db.execute_sql("SELEC 1", &[]).await.unwrap_err();
    assert!(
        matches!(&err, Error::Database { code, .. } if code == "42601"),
        "{err:?}"
    );
    let err = Typed::query().all(&*db).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("42P01"), "undefined table: {err}");
    assert!(err.to_string().contains("typed"), "{err}");
    let err = db.execute_sql("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("22012"), "{err}");
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_a_statement_timeout() {
    let tdb = common::test_db("errors_statement_timeout").await;
    let db = Db::builder(tdb.schema.url())
        .search_path(tdb.schema.name())
        .statement_timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let (result, elapsed) = timed(db.execute_sql("SELECT pg_sleep(2)", &[])).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::StatementTimeout(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("57014"));
    assert!(
        elapsed < Duration::from_millis(1500),
        "cancelled by the server after ~100 ms, took {elapsed:?}"
    );
    // Quick statements still run, and the connection is reusable.
    assert_eq!(
        db.query_sql("SELECT 1::int4", &[]).await.unwrap()[0].get::<_, i32>(0),
        1
    );
    // Inside a transaction the timeout aborts it; a rollback recovers.
    let tx = db.begin().await.unwrap();
    assert!(matches!(
        tx.execute_sql("SELECT pg_sleep(2)", &[]).await,
        Err(Error::StatementTimeout(_))
    ));
    tx.rollback().await.unwrap();
    assert!(db.execute_sql("SELECT 1", &[]).await.is_ok());
}

#[tokio::test]
async fn an_exhausted_pool_is_a_pool_timeout_quickly() {
    let tdb = shop_db("errors_pool_timeout").await;
    let db = pool_on(&tdb, 1, Duration::from_millis(200)).await;
    let tx = db.begin().await.unwrap();
    let status = db.pool_status();
    assert_eq!((status.max_size, status.size, status.available), (1, 1, 0));
    let (result, elapsed) = timed(Customer::query().count(&db)).await;
    match result {
        Err(Error::PoolTimeout(waited)) => assert_eq!(waited, Duration::from_millis(200)),
        other => panic!("expected PoolTimeout, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(150),
        "waited the configured time: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "and no longer: {elapsed:?}"
    );
    assert!(matches!(db.begin().await, Err(Error::PoolTimeout(_))));
    assert!(matches!(
        db.session().begin().await,
        Err(Error::PoolTimeout(_))
    ));
    tx.commit().await.unwrap();
    assert_eq!(Customer::query().count(&db).await.unwrap(), 0, "free again");

    // A waiter is served when the connection comes back within the wait.
    let patient = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let tx = patient.begin().await.unwrap();
    let waiter = {
        let patient = patient.clone();
        tokio::spawn(async move { Customer::query().count(&patient).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(patient.pool_status().waiting, 1);
    tx.commit().await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn a_commit_that_fails_is_an_error_and_the_pool_recovers() {
    let db = common::test_db("errors_deferred").await;
    db.batch_execute(
        "CREATE TABLE parents (id int PRIMARY KEY); \
         CREATE TABLE children (id int PRIMARY KEY, parent_id int NOT NULL \
           CONSTRAINT children_parent_fk REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .await
    .unwrap();
    let tx = db.begin().await.unwrap();
    tx.execute_sql("INSERT INTO children VALUES (1, 42)", &[])
        .await
        .unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKeyViolation { constraint, .. } if constraint == "children_parent_fk"),
        "{err:?}"
    );
    assert_eq!(count_rows(&*db, "children").await, 0);
    for _ in 0..10 {
        db.execute_sql("SELECT 1", &[]).await.unwrap();
    }
}
