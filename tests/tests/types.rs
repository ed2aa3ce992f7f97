//! Every supported column type, and its `Option`, round-trips through a table made
//! by `ddl::create_tables`: extremes, empties, NULLs, and filters on typed columns.

mod common;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use matrx_orm::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "all_types")]
pub struct AllTypes {
    #[orm(primary_key)]
    pub id: i32,
    pub small: i16,
    pub int: i32,
    pub big: i64,
    pub real: f32,
    pub double: f64,
    pub dec: Decimal,
    pub flag: bool,
    pub text: String,
    pub uid: Uuid,
    pub at: DateTime<Utc>,
    pub local: NaiveDateTime,
    pub day: NaiveDate,
    pub time: NaiveTime,
    pub doc: serde_json::Value,
    pub bytes: Vec<u8>,
    pub ints: Vec<i32>,
    pub texts: Vec<String>,
    pub o_small: Option<i16>,
    pub o_int: Option<i32>,
    pub o_big: Option<i64>,
    pub o_real: Option<f32>,
    pub o_double: Option<f64>,
    pub o_dec: Option<Decimal>,
    pub o_flag: Option<bool>,
    pub o_text: Option<String>,
    pub o_uid: Option<Uuid>,
    pub o_at: Option<DateTime<Utc>>,
    pub o_local: Option<NaiveDateTime>,
    pub o_day: Option<NaiveDate>,
    pub o_time: Option<NaiveTime>,
    pub o_doc: Option<serde_json::Value>,
    pub o_bytes: Option<Vec<u8>>,
    pub o_ints: Option<Vec<i32>>,
    pub o_texts: Option<Vec<String>>,
}

fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micros: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, micros)
        .unwrap()
}

/// Ordinary values, every Option `Some`.
fn typical(id: i32) -> AllTypes {
    let local = dt(2024, 2, 29, 13, 45, 1, 123_456);
    AllTypes {
        id,
        small: 12,
        int: 1234,
        big: 1_234_567_890_123,
        real: 1.5,
        double: 2.25,
        dec: "1234.5678".parse().unwrap(),
        flag: true,
        text: "hello".into(),
        uid: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        at: Utc.from_utc_datetime(&local),
        local,
        day: local.date(),
        time: local.time(),
        doc: json!({"a": [1, 2, {"b": null}], "c": "d", "e": 1.5, "f": true}),
        bytes: vec![0, 1, 2, 254, 255],
        ints: vec![1, -2, 3],
        texts: vec!["x".into(), "y z".into()],
        o_small: Some(-1),
        o_int: Some(-2),
        o_big: Some(-3),
        o_real: Some(-0.5),
        o_double: Some(-0.25),
        o_dec: Some("-0.001".parse().unwrap()),
        o_flag: Some(false),
        o_text: Some("opt".into()),
        o_uid: Some(Uuid::from_u128(7)),
        o_at: Some(Utc.from_utc_datetime(&local)),
        o_local: Some(local),
        o_day: Some(local.date()),
        o_time: Some(local.time()),
        o_doc: Some(json!([1, "two"])),
        o_bytes: Some(vec![9, 8]),
        o_ints: Some(vec![7]),
        o_texts: Some(vec!["q".into()]),
    }
}

/// Extremes: min/max integers, infinities, long/empty values, far dates; Options None.
fn extreme(id: i32) -> AllTypes {
    let far = dt(9999, 12, 31, 23, 59, 59, 999_999);
    AllTypes {
        id,
        small: i16::MIN,
        int: i32::MAX,
        big: i64::MIN,
        real: f32::INFINITY,
        double: f64::NEG_INFINITY,
        dec: Decimal::MAX,
        flag: false,
        text: String::new(),
        uid: Uuid::nil(),
        at: Utc.from_utc_datetime(&dt(1, 1, 1, 0, 0, 0, 0)),
        local: far,
        day: NaiveDate::from_ymd_opt(-4000, 1, 1).unwrap(),
        time: NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
        doc: json!({}),
        bytes: Vec::new(),
        ints: Vec::new(),
        texts: Vec::new(),
        o_small: None,
        o_int: None,
        o_big: None,
        o_real: None,
        o_double: None,
        o_dec: None,
        o_flag: None,
        o_text: None,
        o_uid: None,
        o_at: None,
        o_local: None,
        o_day: None,
        o_time: None,
        o_doc: None,
        o_bytes: None,
        o_ints: None,
        o_texts: None,
    }
}

async fn typed_db(prefix: &str) -> common::TestDb {
    let db = common::test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*db, &[AllTypes::META])
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn ddl_gives_each_rust_type_its_postgres_type() {
    let db = typed_db("types_ddl").await;
    let rows = db
        .query_sql(
            "SELECT column_name::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull \
             FROM information_schema.columns c \
             JOIN pg_attribute a ON a.attrelid = 'all_types'::regclass AND a.attname = c.column_name \
             WHERE c.table_schema = current_schema() AND c.table_name = 'all_types' ORDER BY c.ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected_types = [
        ("small", "smallint"),
        ("int", "integer"),
        ("big", "bigint"),
        ("real", "real"),
        ("double", "double precision"),
        ("dec", "numeric"),
        ("flag", "boolean"),
        ("text", "text"),
        ("uid", "uuid"),
        ("at", "timestamp with time zone"),
        ("local", "timestamp without time zone"),
        ("day", "date"),
        ("time", "time without time zone"),
        ("doc", "jsonb"),
        ("bytes", "bytea"),
        ("ints", "integer[]"),
        ("texts", "text[]"),
    ];
    assert_eq!(got.len(), 1 + 2 * expected_types.len());
    assert_eq!(got[0], ("id".into(), "integer".into(), false));
    for (name, ty) in expected_types {
        let plain = got
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        assert_eq!((plain.1.as_str(), plain.2), (ty, false), "{name}");
        let opt = got.iter().find(|c| c.0 == format!("o_{name}")).unwrap();
        assert_eq!((opt.1.as_str(), opt.2), (ty, true), "o_{name}");
    }
}

#[tokio::test]
async fn every_type_round_trips_through_insert_get_query_and_raw() {
    let db = typed_db("types_roundtrip").await;
    let rows = vec![typical(1), extreme(2)];
    let stored = AllTypes::insert_many(&*db, &rows).await.unwrap();
    assert_eq!(stored, rows, "RETURNING decodes what was written");
    assert_eq!(AllTypes::get(&*db, &1).await.unwrap(), rows[0]);
    assert_eq!(AllTypes::get(&*db, &2).await.unwrap(), rows[1]);
    let all = AllTypes::query()
        .order_by(AllTypes::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(all, rows);
    let raw = AllTypes::raw(&*db, "SELECT * FROM all_types ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(raw, rows);

    // Instance update swaps every value (None <-> Some included).
    let mut swapped = extreme(1);
    swapped.text = "changed".into();
    let mut a = swapped.clone();
    a.update(&*db).await.unwrap();
    assert_eq!(a, swapped);
    assert_eq!(AllTypes::get(&*db, &1).await.unwrap(), swapped);
    let mut b = typical(2);
    b.update(&*db).await.unwrap();
    assert_eq!(AllTypes::get(&*db, &2).await.unwrap(), typical(2));
}

/// Every column type but the arrays: these models insert many rows as one statement,
/// one array per column.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "scalar_types")]
pub struct Scalars {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub small: i16,
    pub int: i32,
    pub big: i64,
    pub real: f32,
    pub double: f64,
    pub dec: Decimal,
    pub flag: bool,
    pub text: String,
    pub uid: Uuid,
    pub at: DateTime<Utc>,
    pub local: NaiveDateTime,
    pub day: NaiveDate,
    pub time: NaiveTime,
    pub doc: serde_json::Value,
    pub bytes: Vec<u8>,
    pub o_small: Option<i16>,
    pub o_int: Option<i32>,
    pub o_big: Option<i64>,
    pub o_real: Option<f32>,
    pub o_double: Option<f64>,
    pub o_dec: Option<Decimal>,
    pub o_flag: Option<bool>,
    pub o_text: Option<String>,
    pub o_uid: Option<Uuid>,
    pub o_at: Option<DateTime<Utc>>,
    pub o_local: Option<NaiveDateTime>,
    pub o_day: Option<NaiveDate>,
    pub o_time: Option<NaiveTime>,
    pub o_doc: Option<serde_json::Value>,
    pub o_bytes: Option<Vec<u8>>,
}

fn scalars(all: AllTypes) -> Scalars {
    Scalars {
        id: 0,
        small: all.small,
        int: all.int,
        big: all.big,
        real: all.real,
        double: all.double,
        dec: all.dec,
        flag: all.flag,
        text: all.text,
        uid: all.uid,
        at: all.at,
        local: all.local,
        day: all.day,
        time: all.time,
        doc: all.doc,
        bytes: all.bytes,
        o_small: all.o_small,
        o_int: all.o_int,
        o_big: all.o_big,
        o_real: all.o_real,
        o_double: all.o_double,
        o_dec: all.o_dec,
        o_flag: all.o_flag,
        o_text: all.o_text,
        o_uid: all.o_uid,
        o_at: all.o_at,
        o_local: all.o_local,
        o_day: all.o_day,
        o_time: all.o_time,
        o_doc: all.o_doc,
        o_bytes: all.o_bytes,
    }
}

/// Row `i` of a many-row insert: typical, extreme (every Option NULL) or awkward
/// values in turn, each made distinct by `i`.
fn varied(i: usize) -> AllTypes {
    let mut row = match i % 3 {
        0 => typical(i as i32),
        1 => extreme(i as i32),
        _ => {
            let mut r = typical(i as i32);
            r.o_double = Some(-0.0);
            r.dec = "-79228162514264337593543950335".parse().unwrap();
            r.o_dec = Some("0.0000000000000000000000000001".parse().unwrap());
            r.doc = json!(null);
            r.o_doc = Some(json!(null)); // JSON null, not SQL NULL
            r.text = "NULL".into();
            r.o_text = Some(String::new());
            r.bytes = (0..=255).collect();
            r.o_bytes = Some(Vec::new());
            r.at = Utc.timestamp_opt(0, 1_000).unwrap();
            r.time = NaiveTime::MIN;
            r.o_flag = None;
            r
        }
    };
    row.big = row.big.wrapping_add(i as i64);
    row.text.push_str(&format!("{i} é \"{{,}}\" \\"));
    row.uid = Uuid::from_u128(i as u128);
    row
}

#[tokio::test]
async fn every_scalar_type_round_trips_through_a_one_statement_insert() {
    let db = common::test_db("types_unnest").await;
    matrx_orm::ddl::create_tables(&*db, &[Scalars::META, AllTypes::META])
        .await
        .unwrap();
    // 31 written columns x 3,000 rows = 93,000 values: past the parameter limit.
    let rows: Vec<Scalars> = (0..3_000).map(|i| scalars(varied(i))).collect();
    let (stored, n) = common::count_queries(&db, Scalars::insert_many(&*db, &rows)).await;
    let stored = stored.unwrap();
    assert_eq!(n, 1, "one statement");
    let without_ids: Vec<Scalars> = stored
        .iter()
        .map(|r| Scalars { id: 0, ..r.clone() })
        .collect();
    assert_eq!(
        without_ids, rows,
        "RETURNING gives what was written, in order"
    );
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id));
    let read = Scalars::query()
        .order_by(Scalars::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(read, stored);
    assert!(
        stored[2].o_double.unwrap().is_sign_negative(),
        "-0.0 keeps its sign"
    );
    assert_eq!(stored[2].dec.to_string(), "-79228162514264337593543950335");
    let sql_nulls: Vec<(Option<bool>, Option<bool>)> = db
        .query_sql(
            "SELECT o_doc IS NULL, o_flag IS NULL FROM scalar_types ORDER BY id LIMIT 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        sql_nulls,
        [
            (Some(false), Some(false)),
            (Some(true), Some(true)),
            (Some(false), Some(true))
        ],
        "None is SQL NULL; JSON null is not"
    );

    // NaN does not equal itself: its own small insert.
    let mut nan = scalars(typical(0));
    nan.real = f32::NAN;
    nan.o_double = Some(f64::NAN);
    let stored = Scalars::insert_many(&*db, &vec![nan; 10]).await.unwrap();
    assert!(stored
        .iter()
        .all(|r| r.real.is_nan() && r.o_double.unwrap().is_nan()));

    // With the array columns the rows go as VALUES lists, in chunks (35 written
    // columns: 1,872 rows per statement), and round-trip the same.
    let all: Vec<AllTypes> = (0..3_000).map(varied).collect();
    let (stored, n) = common::count_queries(&db, AllTypes::insert_many(&*db, &all)).await;
    assert_eq!(stored.unwrap(), all);
    assert_eq!(n, 4, "BEGIN, two INSERTs, COMMIT");
}

#[tokio::test]
async fn values_that_are_easy_to_get_wrong() {
    let db = typed_db("types_edges").await;
    let mut row = typical(1);
    row.real = f32::NAN;
    row.double = f64::NAN;
    row.o_double = Some(-0.0);
    row.dec = "-79228162514264337593543950335".parse().unwrap();
    row.o_dec = Some("0.0000000000000000000000000001".parse().unwrap());
    row.doc = json!(null);
    row.o_doc = Some(json!(null)); // JSON null, not SQL NULL
    row.texts = vec![
        String::new(),
        "NULL".into(),
        "a,b".into(),
        "{}".into(),
        "\"q\"".into(),
        "é".into(),
    ];
    row.ints = vec![i32::MIN, 0, i32::MAX];
    row.bytes = (0..=255).collect();
    row.at = Utc.timestamp_opt(0, 1_000).unwrap();
    row.time = NaiveTime::MIN;
    row.text = "x".repeat(1 << 20);
    let stored = row.insert(&*db).await.unwrap();
    assert!(stored.real.is_nan() && stored.double.is_nan());
    assert!(
        stored.o_double.unwrap() == 0.0 && stored.o_double.unwrap().is_sign_negative(),
        "-0.0 keeps its sign"
    );
    assert_eq!(stored.dec, row.dec);
    assert_eq!(stored.o_dec, row.o_dec);
    assert_eq!(stored.doc, serde_json::Value::Null);
    assert_eq!(
        stored.o_doc,
        Some(serde_json::Value::Null),
        "JSON null is not SQL NULL"
    );
    assert_eq!(stored.texts, row.texts);
    assert_eq!(stored.ints, row.ints);
    assert_eq!(stored.bytes, row.bytes);
    assert_eq!(stored.at, row.at);
    assert_eq!(stored.time, row.time);
    assert_eq!(stored.text.len(), 1 << 20);
    let sql_null: Option<bool> = db
        .query_sql("SELECT o_doc IS NULL FROM all_types", &[])
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(sql_null, Some(false));

    // Decimal scale is kept as written.
    let mut scaled = typical(2);
    scaled.dec = "1.500".parse().unwrap();
    let stored = scaled.insert(&*db).await.unwrap();
    assert_eq!(stored.dec.to_string(), "1.500");
}

#[tokio::test]
async fn filters_on_typed_columns() {
    let db = typed_db("types_filters").await;
    let rows: Vec<AllTypes> = (1..=5)
        .map(|i| {
            let mut r = typical(i);
            r.uid = Uuid::from_u128(i as u128);
            r.dec = Decimal::new(i as i64 * 125, 2); // 1.25, 2.50, ...
            r.at = Utc
                .timestamp_opt(1_700_000_000 + i as i64 * 3600, 0)
                .unwrap();
            r.day = NaiveDate::from_ymd_opt(2024, 1, i as u32).unwrap();
            r.flag = i % 2 == 0;
            r.small = i as i16;
            r.o_int = if i <= 2 { None } else { Some(i) };
            r.bytes = vec![i as u8];
            r
        })
        .collect();
    AllTypes::insert_many(&*db, &rows).await.unwrap();
    async fn ids(db: &Db, f: Filter<AllTypes>) -> Vec<i32> {
        let mut v: Vec<i32> = AllTypes::query()
            .filter(f)
            .all(db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    }
    assert_eq!(
        ids(&db, AllTypes::UID.eq(Uuid::from_u128(3))).await,
        vec![3]
    );
    assert_eq!(
        ids(
            &db,
            AllTypes::UID.is_in([Uuid::from_u128(1), Uuid::from_u128(5)])
        )
        .await,
        vec![1, 5]
    );
    assert_eq!(
        ids(&db, AllTypes::DEC.gt(Decimal::new(375, 2))).await,
        vec![4, 5]
    );
    assert_eq!(
        ids(&db, AllTypes::DEC.eq(Decimal::new(2500, 3))).await,
        vec![2],
        "2.500 = 2.50 numerically"
    );
    let t = |h: i64| Utc.timestamp_opt(1_700_000_000 + h * 3600, 0).unwrap();
    assert_eq!(
        ids(&db, AllTypes::AT.between(t(2), t(4))).await,
        vec![2, 3, 4]
    );
    assert_eq!(
        ids(
            &db,
            AllTypes::DAY.lt(NaiveDate::from_ymd_opt(2024, 1, 3).unwrap())
        )
        .await,
        vec![1, 2]
    );
    assert_eq!(ids(&db, AllTypes::FLAG.eq(true)).await, vec![2, 4]);
    assert_eq!(ids(&db, AllTypes::SMALL.gte(4i16)).await, vec![4, 5]);
    assert_eq!(ids(&db, AllTypes::O_INT.is_null()).await, vec![1, 2]);
    assert_eq!(ids(&db, AllTypes::O_INT.gt(3)).await, vec![4, 5]);
    assert_eq!(ids(&db, AllTypes::BYTES.eq(vec![3u8])).await, vec![3]);
    assert_eq!(
        ids(&db, AllTypes::INTS.eq(vec![1, -2, 3])).await,
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        ids(&db, AllTypes::DOC.eq(typical(0).doc)).await,
        vec![1, 2, 3, 4, 5]
    );

    // Update by filter with typed values, then set_null on each nullable kind.
    let updated = AllTypes::query()
        .filter(AllTypes::ID.eq(1))
        .update()
        .set(AllTypes::UID, Uuid::from_u128(99))
        .set(AllTypes::DOC, json!({"new": true}))
        .set(AllTypes::TEXTS, vec!["n".to_string()])
        .set(AllTypes::O_AT, t(9))
        .set_null(AllTypes::O_DEC)
        .set_null(AllTypes::O_DOC)
        .set_null(AllTypes::O_BYTES)
        .set_null(AllTypes::O_TEXTS)
        .set_null(AllTypes::O_TIME)
        .exec(&*db)
        .await
        .unwrap();
    let u = &updated[0];
    assert_eq!(u.uid, Uuid::from_u128(99));
    assert_eq!(u.doc, json!({"new": true}));
    assert_eq!(u.texts, vec!["n".to_string()]);
    assert_eq!(u.o_at, Some(t(9)));
    assert_eq!(
        (u.o_dec, &u.o_doc, &u.o_bytes, &u.o_texts, u.o_time),
        (None, &None, &None, &None, None)
    );
    assert_eq!(&AllTypes::get(&*db, &1).await.unwrap(), u);
}
