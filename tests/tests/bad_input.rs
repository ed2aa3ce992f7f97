//! Hostile and awkward input: SQL-looking strings, unicode, NUL bytes, huge lists,
//! out-of-range paging, and identifiers that need quoting.

mod common;
mod fixtures;

use common::count_queries;
use common::shop::*;
use fixtures::*;
use matrx_orm::prelude::*;
use matrx_orm::Error;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// Strings that break naive SQL building or naive encodings.
fn nasty() -> Vec<String> {
    [
        "'",
        "''",
        "\"",
        "\\",
        "\\'",
        "\\\\'",
        "$1",
        "$$",
        "$tag$ body $tag$",
        "'; DROP TABLE customers; --",
        "\"; DROP TABLE \"customers\"; --",
        "1 OR 1=1",
        "%",
        "_",
        "%'--",
        "/* comment */",
        "line\nbreak\r\ttab",
        "👩‍👩‍👧‍👦 family",
        "مرحبا بالعالم",
        "שלום \u{202E}reversed\u{202C}",
        "e\u{0301}\u{0327}\u{0308} combining",
        "zero\u{200B}width\u{200D}joiner",
        "\u{FEFF}bom",
        "\u{10FFFF}",
        "𝕌𝕟𝕚𝕔𝕠𝕕𝕖",
        "  padded  ",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn named(name: &str, i: usize) -> Customer {
    customer(name, &format!("{i}-{name}"))
}

#[tokio::test]
async fn hostile_strings_round_trip_through_every_path() {
    let db = shop_db("bad_strings").await;
    let strings = nasty();

    // insert_many, then each one found by equality (its own statement each).
    let rows: Vec<Customer> = strings
        .iter()
        .enumerate()
        .map(|(i, s)| named(s, i))
        .collect();
    let stored = Customer::insert_many(&*db, &rows).await.unwrap();
    for (s, c) in strings.iter().zip(&stored) {
        assert_eq!(&c.name, s);
        let found = Customer::query()
            .filter(Customer::NAME.eq(s.as_str()))
            .all(&*db)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{s:?}");
        assert_eq!(&found[0], c);
        let via_raw = Customer::raw(&*db, "SELECT * FROM customers WHERE name = $1", &[s])
            .await
            .unwrap();
        assert_eq!(via_raw, found);
    }
    let all_in = Customer::query()
        .filter(Customer::NAME.is_in(strings.clone()))
        .count(&*db)
        .await
        .unwrap();
    assert_eq!(all_in, strings.len() as u64);

    // create, update by filter, instance update, upsert.
    for (i, s) in strings.iter().enumerate() {
        let email = format!("create-{i}-{s}");
        let created = Customer::create()
            .set(Customer::NAME, s.as_str())
            .set(Customer::EMAIL, email.as_str())
            .set(Customer::CREATED_AT, ts(0))
            .exec(&*db)
            .await
            .unwrap();
        assert_eq!(
            (created.name.as_str(), created.email.as_str()),
            (s.as_str(), email.as_str())
        );
        let renamed = format!("{s}{s}");
        let updated = Customer::query()
            .filter(Customer::EMAIL.eq(email.as_str()))
            .update()
            .set(Customer::NAME, renamed.as_str())
            .exec(&*db)
            .await
            .unwrap();
        assert_eq!(updated.len(), 1);
        assert_eq!(updated[0].name, renamed);
        let mut inst = updated[0].clone();
        inst.name = format!("<{s}>");
        inst.update(&*db).await.unwrap();
        assert_eq!(
            Customer::get(&*db, &inst.id).await.unwrap().name,
            format!("<{s}>")
        );
        let up = Customer {
            name: s.clone(),
            ..inst.clone()
        }
        .upsert(&*db, &[Customer::EMAIL.into()])
        .await
        .unwrap();
        assert_eq!((up.id, up.name.as_str()), (inst.id, s.as_str()));
    }

    // LIKE patterns are values: `%` and `_` are wildcards, nothing else happens.
    let pct = Customer::query()
        .filter(Customer::NAME.like("%'--"))
        .all(&*db)
        .await
        .unwrap();
    assert!(pct.iter().all(|c| c.name.ends_with("'--")) && !pct.is_empty());
    let drop_like = Customer::query()
        .filter(Customer::NAME.like("'; DROP%"))
        .count(&*db)
        .await
        .unwrap();
    assert_eq!(drop_like, 2, "the inserted row and the created one");

    // The tables are all still there.
    assert_eq!(
        count_rows(&*db, "customers").await,
        2 * strings.len() as i64
    );
    let tables: i64 = db
        .query_sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(tables, 9);
}

#[tokio::test]
async fn arbitrary_unicode_round_trips() {
    let db = shop_db("bad_unicode").await;
    let strategy =
        proptest::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..48)
            .prop_map(|chars| chars.into_iter().collect::<String>());
    let mut runner = TestRunner::deterministic();
    let strings: Vec<String> = (0..400)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let rows: Vec<Customer> = strings
        .iter()
        .enumerate()
        .map(|(i, s)| named(s, i))
        .collect();
    let (stored, n) = count_queries(&db, async {
        Customer::insert_many(&*db, &rows).await.unwrap()
    })
    .await;
    assert_eq!(n, 1);
    for (s, c) in strings.iter().zip(&stored) {
        assert_eq!(&c.name, s);
    }
    let back = Customer::query()
        .order_by(Customer::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(back, stored);
    for s in strings.iter().step_by(20) {
        let n = Customer::query()
            .filter(Customer::NAME.eq(s.as_str()))
            .count(&*db)
            .await
            .unwrap();
        assert_eq!(
            n as usize,
            strings.iter().filter(|t| *t == s).count(),
            "{s:?}"
        );
    }
    let rows = db
        .query_sql("SELECT bool_and(length(name) >= 0) FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, Option<bool>>(0), Some(true));
}

/// PostgreSQL text cannot hold U+0000. The server refuses it (SQLSTATE 22021), the
/// library reports `Error::InvalidInput` with the server's message, and nothing is
/// written.
#[tokio::test]
async fn a_nul_byte_is_invalid_input_and_writes_nothing() {
    let db = shop_db("bad_nul").await;
    let ann = customer("Ann", "ann@x").insert(&*db).await.unwrap();
    let is_nul_error = |err: &Error| match err {
        Error::InvalidInput(m) => m.contains("0x00"),
        _ => false,
    };

    let err = customer("a\0b", "nul@x").insert(&*db).await.unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");
    assert!(err.to_string().starts_with("invalid input: "), "{err}");
    assert!(err.to_string().contains("invalid byte sequence"), "{err}");

    let err = Customer::create()
        .set(Customer::NAME, "\0")
        .set(Customer::EMAIL, "nul2@x")
        .set(Customer::CREATED_AT, ts(0))
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");

    let batch = vec![
        customer("ok1", "ok1@x"),
        customer("bad", "bad\0@x"),
        customer("ok2", "ok2@x"),
    ];
    let err = Customer::insert_many(&*db, &batch).await.unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");

    let err = Customer::query()
        .update()
        .set(Customer::NAME, "x\0")
        .exec(&*db)
        .await
        .unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");
    let mut inst = ann.clone();
    inst.name = "\0".into();
    assert!(is_nul_error(&inst.update(&*db).await.unwrap_err()));
    assert_eq!(inst.name, "\0", "instance untouched on failure");
    let err = Customer {
        name: "\0".into(),
        ..ann.clone()
    }
    .upsert(&*db, &[Customer::EMAIL.into()])
    .await
    .unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");

    // In reads too: a filter value, a list, a raw parameter.
    let err = Customer::query()
        .filter(Customer::NAME.eq("\0"))
        .all(&*db)
        .await
        .unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");
    let err = Customer::query()
        .filter(Customer::NAME.is_in(["a", "\0"]))
        .count(&*db)
        .await
        .unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");
    let err = Customer::raw(&*db, "SELECT * FROM customers WHERE name = $1", &[&"\0"])
        .await
        .unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");

    // Nothing was written or changed.
    assert_eq!(Customer::query().all(&*db).await.unwrap(), vec![ann]);
}

/// Bad input in one row of a 100,000-row insert (one statement, one array per column)
/// is the same typed error as in a single row, and writes nothing: a NUL byte in text
/// or in JSON, a value out of the column's range, a Rust type the column's type does
/// not take.
#[tokio::test]
async fn bad_input_in_a_100_000_row_insert_is_a_typed_error_and_writes_nothing() {
    #[derive(Model, Debug, Clone)]
    #[orm(table = "notes")]
    pub struct Note {
        #[orm(primary_key, auto)]
        pub id: i64,
        pub body: String,
        pub doc: Option<serde_json::Value>,
        #[orm(sql_type = "varchar(8)")]
        pub code: String,
        #[orm(sql_type = "numeric(4, 1)")]
        pub amount: rust_decimal::Decimal,
    }
    /// Writes an `i64` into the `numeric` column.
    #[derive(Model, Debug, Clone)]
    #[orm(table = "notes")]
    pub struct WrongNote {
        #[orm(primary_key, auto)]
        pub id: i64,
        pub body: String,
        pub doc: Option<serde_json::Value>,
        pub code: String,
        #[orm(sql_type = "numeric(4, 1)")]
        pub amount: i64,
    }
    let db = common::test_db("bad_unnest").await;
    matrx_orm::ddl::create_tables(&*db, &[Note::META])
        .await
        .unwrap();
    let notes: Vec<Note> = (0..100_000)
        .map(|i| Note {
            id: 0,
            body: format!("note {i}"),
            doc: (i % 2 == 0).then(|| serde_json::json!({ "i": i })),
            code: format!("{:08}", i),
            amount: rust_decimal::Decimal::new(i as i64 % 9_999, 1),
        })
        .collect();
    let is_nul_error = |err: &Error| matches!(err, Error::InvalidInput(m) if m.contains("0x00"));
    let last = notes.len() - 1;

    let mut bad = notes.clone();
    bad[last].body = "a\0b".into();
    let (err, n) = count_queries(&db, Note::insert_many(&*db, &bad)).await;
    let err = err.unwrap_err();
    assert!(is_nul_error(&err), "{err:?}");
    assert_eq!(n, 1);

    let mut bad = notes.clone();
    bad[last].doc = Some(serde_json::json!({"k": "a\u{0}b"}));
    let err = Note::insert_many(&*db, &bad).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    // The column's modifier is checked as for one value: too long, too precise.
    let mut bad = notes.clone();
    bad[last].code = "123456789".into();
    let err = Note::insert_many(&*db, &bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("character varying(8)")),
        "not cut to fit: {err:?}"
    );
    let mut bad = notes.clone();
    bad[last].amount = rust_decimal::Decimal::new(123_456, 1);
    let err = Note::insert_many(&*db, &bad).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    // A Rust type the column does not take: the driver's type error, before anything
    // is sent, on either path.
    let wrong: Vec<WrongNote> = (0..20)
        .map(|i| WrongNote {
            id: 0,
            body: format!("w{i}"),
            doc: None,
            code: "w".into(),
            amount: i,
        })
        .collect();
    for err in [
        WrongNote::insert_many(&*db, &wrong).await.unwrap_err(),
        WrongNote::insert_rows(&wrong)
            .values_only()
            .exec(&*db)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::Driver(m) if m.contains("`i64`") && m.contains("`numeric`")),
            "{err:?}"
        );
    }
    assert_eq!(count_rows(&*db, "notes").await, 0, "nothing was written");

    // The good rows go in whole, rounded to the column's scale like a single value.
    let mut good = notes;
    good[0].amount = "1.25".parse().unwrap();
    let stored = Note::insert_many(&*db, &good).await.unwrap();
    assert_eq!(stored.len(), 100_000);
    assert_eq!(stored[0].amount.to_string(), "1.3");
    assert_eq!(stored[last].code, good[last].code);
}

/// jsonb refuses `\u0000` in a string with SQLSTATE 22P05 (untranslatable character):
/// also `InvalidInput`.
#[tokio::test]
async fn a_nul_in_json_is_invalid_input() {
    #[derive(Model, Debug, Clone, PartialEq)]
    #[orm(table = "docs")]
    pub struct Doc {
        #[orm(primary_key, auto)]
        pub id: i64,
        pub body: serde_json::Value,
        pub tags: Vec<String>,
    }
    let db = common::test_db("bad_nul_json").await;
    matrx_orm::ddl::create_tables(&*db, &[Doc::META])
        .await
        .unwrap();
    let err = Doc {
        id: 0,
        body: serde_json::json!({"k": "a\u{0}b"}),
        tags: vec![],
    }
    .insert(&*db)
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let err = Doc {
        id: 0,
        body: serde_json::json!({}),
        tags: vec!["ok".into(), "b\0d".into()],
    }
    .insert(&*db)
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(count_rows(&*db, "docs").await, 0);
    // The escaped text form is ordinary data.
    let ok = Doc {
        id: 0,
        body: serde_json::json!({"k": "\\u0000"}),
        tags: vec!["\\0".into()],
    }
    .insert(&*db)
    .await
    .unwrap();
    assert_eq!(ok.body["k"], "\\u0000");
}

#[tokio::test]
async fn a_huge_is_in_list_is_one_query() {
    let db = shop_db("bad_huge_in").await;
    let stored = Customer::insert_many(&*db, &customers(1000)).await.unwrap();
    let mut ids: Vec<i64> = (0..100_000).map(|i| i * 7 + 1_000_000).collect();
    ids.extend(stored.iter().step_by(3).map(|c| c.id));
    let expected = stored.iter().step_by(3).count() as u64;
    let (count, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::ID.is_in(ids.clone()))
            .count(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!((count, n), (expected, 1));
    let (rows, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::ID.not_in(ids.clone()))
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!((rows.len() as u64, n), (1000 - expected, 1));
    let emails: Vec<String> = (0..100_000)
        .map(|i| format!("c{i:04}@example.com"))
        .collect();
    let (count, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::EMAIL.is_in(emails))
            .count(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!((count, n), (1000, 1));
    let (deleted, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::ID.is_in(ids))
            .delete(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!((deleted.len() as u64, n), (expected, 1));
}

#[tokio::test]
async fn more_parameters_than_postgres_allows_is_an_error_not_a_panic() {
    let db = shop_db("bad_too_many_params").await;
    Customer::insert_many(&*db, &customers(3)).await.unwrap();
    // Each `eq` is one parameter: 70,000 of them do not fit in one statement.
    let wide = Filter::any((0..70_000i64).map(|i| Customer::ID.eq(i)));
    let err = Customer::query()
        .filter(wide)
        .count(&*db)
        .await
        .unwrap_err();
    // The pool is fine afterwards.
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 3);
    assert!(
        matches!(
            err,
            Error::InvalidInput(_) | Error::Driver(_) | Error::Database { .. }
        ),
        "a typed error naming the cause, not a connection fault: {err:?}"
    );
    assert!(
        err.to_string().to_lowercase().contains("parameter"),
        "names the cause: {err}"
    );
    // 60,000 fit, and are right.
    let wide = Filter::any((0..60_000i64).map(|i| Customer::ID.eq(i)));
    assert_eq!(Customer::query().filter(wide).count(&*db).await.unwrap(), 3);
}

#[tokio::test]
async fn out_of_range_paging_is_invalid_input_before_any_statement() {
    let db = shop_db("bad_paging").await;
    Customer::insert_many(&*db, &customers(3)).await.unwrap();
    let (err, n) = count_queries(&db, async {
        Customer::query().limit(u64::MAX).all(&*db).await
    })
    .await;
    assert!(
        matches!(&err, Err(Error::InvalidInput(m)) if m.contains("limit")),
        "{err:?}"
    );
    assert_eq!(n, 0);
    let (err, n) = count_queries(&db, async {
        Customer::query().offset(u64::MAX).count(&*db).await
    })
    .await;
    assert!(
        matches!(&err, Err(Error::InvalidInput(m)) if m.contains("offset")),
        "{err:?}"
    );
    assert_eq!(n, 0);
    assert_eq!(
        Customer::query()
            .limit(i64::MAX as u64)
            .all(&*db)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        Customer::query()
            .offset(i64::MAX as u64)
            .all(&*db)
            .await
            .unwrap()
            .len(),
        0
    );
}

/// Identifiers are always quoted: a table and columns named like SQL are just names.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "we\"ird Table; DROP")]
pub struct Weird {
    #[orm(primary_key, auto, column = "Order")]
    pub id: i64,
    #[orm(column = "sel\"ect", unique)]
    pub select: String,
    #[orm(column = "user name", index)]
    pub user_name: Option<String>,
    #[orm(column = "a;b--", default = "7")]
    pub ab: i32,
}

#[tokio::test]
async fn identifiers_that_need_quoting() {
    let db = common::test_db("bad_identifiers").await;
    matrx_orm::ddl::create_tables(&*db, &[Weird::META])
        .await
        .unwrap();
    let w = Weird {
        id: 0,
        select: "s".into(),
        user_name: Some("u".into()),
        ab: 0,
    }
    .insert(&*db)
    .await
    .unwrap();
    assert_eq!(w.ab, 7, "default from DDL");
    let c = Weird::create()
        .set(Weird::SELECT, "t")
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(c.user_name, None);
    let mut got = Weird::get(&*db, &w.id).await.unwrap();
    assert_eq!(got, w);
    got.user_name = None;
    got.update(&*db).await.unwrap();
    let found = Weird::query()
        .filter(Weird::USER_NAME.is_null() & Weird::SELECT.like("%"))
        .order_by(Weird::ID.desc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|w| w.select.as_str()).collect::<Vec<_>>(),
        ["t", "s"]
    );
    let up = Weird {
        id: 0,
        select: "s".into(),
        user_name: Some("again".into()),
        ab: 1,
    }
    .upsert(&*db, &[Weird::SELECT.into()])
    .await
    .unwrap();
    assert_eq!((up.id, up.user_name.as_deref()), (w.id, Some("again")));
    Weird::query()
        .filter(Weird::AB.eq(7))
        .update()
        .set(Weird::AB, 8)
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(
        Weird::query()
            .filter(Weird::AB.eq(8))
            .count(&*db)
            .await
            .unwrap(),
        2
    );
    let raw = Weird::raw(
        &*db,
        "SELECT * FROM \"we\"\"ird Table; DROP\" ORDER BY \"Order\"",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(raw.len(), 2);
    assert_eq!(Weird::query().delete(&*db).await.unwrap().len(), 2);
    let indexes: i64 = db
        .query_sql(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexdef LIKE '%\"user name\"%'",
            &[],
        )
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(indexes, 1);
    matrx_orm::ddl::drop_tables(&*db, &[Weird::META])
        .await
        .unwrap();
}
