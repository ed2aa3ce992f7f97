//! A hostile schema: reserved words, mixed case, spaces, quotes, leading digits,
//! 63-byte names, every supported type, an unsupported one, a composite FK to a
//! composite PK, a self many-to-many, a junction with payload, two FKs to one table,
//! enums. The output is checked in as a golden file, and compiled: the golden models
//! are a module of this test and load rows of every type.

mod common;

#[path = "golden/hostile/mod.rs"]
#[allow(dead_code, unused_imports)]
mod models;

use common::*;
use matrx_orm::prelude::*;
use matrx_orm_cli::{generate, introspect, Error, Options, Unsupported};
use models::{EveryType, MoodType, Status, UserAccount};

const SQL: &str = include_str!("sql/hostile.sql");

fn options() -> Options {
    let mut o = Options::new("hostile", "src/models");
    o.unsupported = Unsupported::Skip;
    o
}

#[tokio::test]
async fn an_unsupported_type_is_a_named_error_by_default() {
    let t = test_db("cli_hostile_err").await;
    run_sql(&t, SQL).await;
    let catalog = introspect(&t.db, t.schema.name())
        .await
        .expect("introspect");
    let err = generate(&catalog, &Options::new(t.schema.name(), "out"))
        .expect_err("interval has no Rust type");
    let Error::UnsupportedTypes(columns) = &err else {
        panic!("expected UnsupportedTypes, got {err}");
    };
    assert_eq!(columns, &[r#""every_type"."span" (interval)"#.to_owned()]);
    assert!(err.to_string().contains("--unsupported skip"), "{err}");
    t.schema.drop_now().await.expect("drop schema");
}

#[tokio::test]
async fn hostile_schema_generates_the_golden_models() {
    let t = test_db("cli_hostile").await;
    run_sql(&t, SQL).await;
    let generated = generate_as(&t, options(), "hostile").await;
    assert_golden("hostile", &generated);
    assert_eq!(generated, generate_as(&t, options(), "hostile").await);
    t.schema.drop_now().await.expect("drop schema");
}

#[tokio::test]
async fn golden_hostile_models_read_and_write_every_type() {
    let t = test_db("cli_hostile_rows").await;
    run_sql(&t, SQL).await;
    run_sql(
        &t,
        r#"INSERT INTO "User Accounts" ("type", "Mixed Case Name", mood, moods, contact)
               VALUES ('admin', 'Ada', 'so-so', '{happy,"Very Sad"}', 'ada@example.com'),
                      ('user', 'Alan', 'type', NULL, NULL);
           INSERT INTO friendships VALUES (1, 2);
           INSERT INTO every_type (b, i2, i4, i8, f4, f8, t, vc, ch, num, num_p, u, ts, ts3,
                                   d, tm, jb, js, by, ai, at, au, ajb, abytea, st, span)
               VALUES (true, 2, 4, 8, 0.5, 0.25, 'text', 'varchar', 'abc', 1.5, 12.34,
                       '00000000-0000-0000-0000-000000000001', '2024-01-02 03:04:05',
                       '2024-01-02 03:04:05.678', '2024-01-02', '03:04:05', '{"a": 1}',
                       '[1, 2]', '\x0102', '{1,2}', '{a,b}',
                       '{00000000-0000-0000-0000-000000000002}', '{"{}"}', '{"\\x03"}',
                       'done', '1 day')"#,
    )
    .await;
    let users = UserAccount::query()
        .order_by(UserAccount::ID.asc())
        .prefetch(UserAccount::FRIENDS)
        .prefetch(UserAccount::USERS)
        .all(&t.db)
        .await
        .expect("load users");
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].r#type, "admin");
    assert_eq!(users[0].mixed_case_name, "Ada");
    assert_eq!(users[0].mood, MoodType::SoSo);
    assert_eq!(
        users[0].moods,
        Some(vec![MoodType::Happy, MoodType::VerySad])
    );
    assert_eq!(users[0].contact.as_deref(), Some("ada@example.com"));
    assert_eq!(users[1].mood, MoodType::Type);
    assert_eq!(
        users[0].friends.iter().map(|u| u.id).collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(users[1].users.iter().map(|u| u.id).collect::<Vec<_>>(), [1]);

    let rows = EveryType::query()
        .all(&t.db)
        .await
        .expect("load every type");
    let row = &rows[0];
    assert!(row.b);
    assert_eq!((row.i2, row.i4, row.i8), (Some(2), Some(4), Some(8)));
    assert_eq!(row.vc.as_deref(), Some("varchar"));
    assert_eq!(row.ch.as_deref(), Some("abc"));
    assert_eq!(row.num_p.map(|n| n.to_string()), Some("12.34".to_owned()));
    assert_eq!(row.js, Some(serde_json::json!([1, 2])));
    assert_eq!(row.by.as_deref(), Some(&[1u8, 2][..]));
    assert_eq!(row.ai, Some(vec![1, 2]));
    assert_eq!(row.abytea, Some(vec![vec![3u8]]));
    assert_eq!(row.st, Status::Done);
    assert_eq!(row.doubled, Some(8));

    // An enum as a bound parameter.
    let very_sad = UserAccount::query()
        .filter(UserAccount::MOOD.eq(MoodType::VerySad))
        .count(&t.db)
        .await
        .expect("filter by an enum");
    assert_eq!(very_sad, 0);
    t.schema.drop_now().await.expect("drop schema");
}
