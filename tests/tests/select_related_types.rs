//! Values keep their types through `select_related`'s aggregates: every supported column
//! type (timestamps, numerics, bytea, arrays, jsonb, NULLs, extremes) reaches the model
//! the same whether the row is a plain result row, a joined to-one row, or a record
//! inside a to-many aggregate, nested one level deeper.

mod common;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use matrx_orm::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "holders")]
pub struct Holder {
    #[orm(primary_key)]
    pub id: i32,
    pub pick: Option<i32>,
    #[orm(belongs_to(key = "pick"))]
    pub picked: One<Typed>,
    #[orm(has_many(foreign_key = "holder_id"))]
    pub values: Many<Typed>,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "typed")]
pub struct Typed {
    #[orm(primary_key)]
    pub id: i32,
    pub holder_id: i32,
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
    pub o_dec: Option<Decimal>,
    pub o_text: Option<String>,
    pub o_at: Option<DateTime<Utc>>,
    pub o_doc: Option<serde_json::Value>,
    pub o_bytes: Option<Vec<u8>>,
    pub o_ints: Option<Vec<i32>>,
    #[orm(belongs_to(key = "holder_id"))]
    pub holder: One<Holder>,
}

fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micros: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, micros)
        .unwrap()
}

fn typical(id: i32, holder_id: i32) -> Typed {
    let local = dt(2024, 2, 29, 13, 45, 1, 123_456);
    Typed {
        id,
        holder_id,
        small: 12,
        int: 1234,
        big: 1_234_567_890_123,
        real: 1.5,
        double: 2.25,
        dec: "1234.5678".parse().unwrap(),
        flag: true,
        text: "hello, \"world\" \\ ünïcødé".into(),
        uid: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        at: Utc.from_utc_datetime(&local),
        local,
        day: local.date(),
        time: local.time(),
        doc: json!({"a": [1, 2, {"b": null}], "c": "d", "e": 1.5, "f": true}),
        bytes: vec![0, 1, 2, 254, 255],
        ints: vec![1, -2, 3],
        texts: vec!["x".into(), "y z".into(), "".into()],
        o_dec: Some("-0.000000000000000000000000001".parse().unwrap()),
        o_text: Some("opt".into()),
        o_at: Some(Utc.from_utc_datetime(&local)),
        o_doc: Some(json!([1, "two", null])),
        o_bytes: Some(vec![]),
        o_ints: Some(vec![7]),
        holder: Default::default(),
    }
}

fn extreme(id: i32, holder_id: i32) -> Typed {
    Typed {
        id,
        holder_id,
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
        local: dt(9999, 12, 31, 23, 59, 59, 999_999),
        day: NaiveDate::from_ymd_opt(-4000, 1, 1).unwrap(),
        time: NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
        doc: json!({}),
        bytes: Vec::new(),
        ints: Vec::new(),
        texts: Vec::new(),
        o_dec: None,
        o_text: None,
        o_at: None,
        o_doc: None,
        o_bytes: None,
        o_ints: None,
        holder: Default::default(),
    }
}

/// A `Typed` without its relation fields, for comparisons.
fn plain(t: &Typed) -> Typed {
    Typed {
        holder: Default::default(),
        ..t.clone()
    }
}

#[tokio::test]
async fn every_type_survives_joins_and_aggregates() {
    let db = common::test_db("sr_types").await;
    matrx_orm::ddl::create_tables(&*db, &[Holder::META, Typed::META])
        .await
        .unwrap();
    let holders = vec![
        Holder {
            id: 1,
            pick: None,
            picked: Default::default(),
            values: Default::default(),
        },
        Holder {
            id: 2,
            pick: None,
            picked: Default::default(),
            values: Default::default(),
        },
        Holder {
            id: 3,
            pick: None,
            picked: Default::default(),
            values: Default::default(),
        },
    ];
    Holder::insert_many(&*db, &holders).await.unwrap();
    let rows = vec![
        typical(10, 1),
        extreme(11, 1),
        extreme(20, 2),
        typical(21, 2),
    ];
    Typed::insert_many(&*db, &rows).await.unwrap();
    db.execute_sql(
        "UPDATE holders SET pick = CASE id WHEN 1 THEN 11 WHEN 2 THEN 20 END",
        &[],
    )
    .await
    .unwrap();

    let direct: Vec<Typed> = Typed::query()
        .order_by(Typed::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(direct.iter().map(plain).collect::<Vec<_>>(), rows);

    let (loaded, queries) = common::count_queries(
        &db,
        Holder::query()
            .order_by(Holder::ID.asc())
            .select_related(Holder::PICKED.with(Typed::HOLDER))
            .select_related(Holder::VALUES.with(Typed::HOLDER))
            .all(&*db),
    )
    .await;
    let loaded = loaded.unwrap();
    assert_eq!(queries, 1);
    assert_eq!(loaded.len(), 3);

    // To-one, flattened into the row.
    assert_eq!(loaded[0].picked.get().map(plain), Some(rows[1].clone()));
    assert_eq!(loaded[1].picked.get().map(plain), Some(rows[2].clone()));
    assert_eq!(
        loaded[2].picked.state(),
        Some(None),
        "NULL key: loaded and NULL"
    );

    // To-many, one record per row, ordered by primary key; nested to-one inside.
    let values = |h: &Holder| {
        h.values
            .get()
            .unwrap()
            .iter()
            .map(|t| plain(t))
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&loaded[0]), vec![rows[0].clone(), rows[1].clone()]);
    assert_eq!(values(&loaded[1]), vec![rows[2].clone(), rows[3].clone()]);
    assert_eq!(
        values(&loaded[2]),
        Vec::<Typed>::new(),
        "no rows: loaded and empty"
    );
    for h in &loaded {
        for t in h.values.get().unwrap() {
            assert_eq!(t.holder.get().map(|x| x.id), Some(h.id));
        }
    }

    // The same graph as prefetch's.
    let prefetched = Holder::query()
        .order_by(Holder::ID.asc())
        .prefetch(Holder::PICKED.with(Typed::HOLDER))
        .prefetch(Holder::VALUES.with(Typed::HOLDER))
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(loaded, prefetched);

    // And the batched-with-joined-children statement (the items' holders joined in).
    let balanced = Holder::query()
        .order_by(Holder::ID.asc())
        .balanced(Holder::PICKED.with(Typed::HOLDER))
        .balanced(Holder::VALUES.with(Typed::HOLDER))
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(balanced, prefetched);
}
