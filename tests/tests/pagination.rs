//! Keyset pages (`Select::page_after`, `Cursor`) and offset pages with a total
//! (`Select::page`) against a real server: every row exactly once and in order over
//! orderings with duplicates and NULLs, composite keys, rows inserted between pages,
//! totals that match `count()`, and typed refusals.

mod common;
mod fixtures;

use common::count_queries;
use common::shop::*;
use fixtures::*;
use matrx_orm::prelude::*;
use matrx_orm::{Cursor, Error, OrderBy, Select};

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "gadgets")]
pub struct Gadget {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub n: i32,
    pub label: Option<String>,
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// 60 gadgets: n in 0..5 (many duplicates), label one of four values or NULL,
/// `at` NULL for every seventh.
async fn gadget_db(prefix: &str) -> common::TestDb {
    let db = common::test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*db, &[Gadget::META])
        .await
        .unwrap();
    let rows: Vec<Gadget> = (0..60)
        .map(|i| Gadget {
            id: 0,
            n: i * 7 % 5,
            label: match i % 5 {
                0 => None,
                k => Some(format!("l{}", k % 4)),
            },
            at: (i % 7 != 0).then(|| ts(i64::from(i % 4))),
        })
        .collect();
    Gadget::insert_many(&*db, &rows).await.unwrap();
    db
}

/// Walks `query` page by page (passing each cursor through its serde form) and
/// returns the keys seen.
async fn walk<M, K>(db: &Db, query: &Select<M>, size: u64, key: impl Fn(&M) -> K) -> Vec<K>
where
    M: Model,
{
    let mut seen = Vec::new();
    let mut after: Option<Cursor<M>> = None;
    for _ in 0..10_000 {
        let page = query.page_after(db, after.as_ref(), size).await.unwrap();
        assert!(page.items.len() as u64 <= size);
        seen.extend(page.items.iter().map(&key));
        match page.next {
            Some(cursor) => {
                assert_eq!(page.items.len() as u64, size);
                let json = serde_json::to_string(&cursor).unwrap();
                let back: Cursor<M> = serde_json::from_str(&json).unwrap();
                assert_eq!(back, cursor);
                after = Some(back);
            }
            None => return seen,
        }
    }
    panic!("the walk did not end");
}

#[tokio::test]
async fn keyset_pages_walk_every_row_once_in_order_over_duplicates_and_nulls() {
    let db = gadget_db("keyset_walk").await;
    let orders: Vec<Vec<OrderBy<Gadget>>> = vec![
        vec![],
        vec![Gadget::N.asc()],
        vec![Gadget::N.desc()],
        vec![Gadget::LABEL.asc()],
        vec![Gadget::LABEL.desc()],
        vec![Gadget::LABEL.asc().nulls_first()],
        vec![Gadget::LABEL.desc().nulls_last()],
        vec![Gadget::LABEL.asc(), Gadget::N.desc()],
        vec![
            Gadget::AT.desc().nulls_last(),
            Gadget::LABEL.asc().nulls_first(),
        ],
        vec![Gadget::N.asc(), Gadget::ID.desc()],
    ];
    for order in orders {
        let mut query = Gadget::query().filter(Gadget::N.ne(4));
        for term in &order {
            query = query.order_by(*term);
        }
        // The reference: all() with the primary key as the final tiebreak.
        let mut reference = query.clone();
        if !order.iter().any(|t| format!("{t:?}").starts_with("id ")) {
            reference = reference.order_by(Gadget::ID.asc());
        }
        let expected: Vec<i64> = reference
            .all(&*db)
            .await
            .unwrap()
            .iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(expected.len(), 48);
        for size in [1, 3, 7, 48, 100] {
            let seen = walk(&db, &query, size, |g: &Gadget| g.id).await;
            assert_eq!(seen, expected, "order {order:?}, size {size}");
        }
    }
}

#[tokio::test]
async fn keyset_pages_over_a_composite_primary_key() {
    let db = shop_db("keyset_composite").await;
    let mut rows = Vec::new();
    for region in ["eu", "us", "ap"] {
        for code in [3, 1, 2, 10] {
            rows.push(warehouse(region, code, &format!("w{}", code % 2)));
        }
    }
    Warehouse::insert_many(&*db, &rows).await.unwrap();
    let key = |w: &Warehouse| (w.region.clone(), w.code);
    for query in [
        Warehouse::query(),
        Warehouse::query().order_by(Warehouse::NAME.desc()),
        Warehouse::query().order_by(Warehouse::CODE.asc()),
    ] {
        let expected: Vec<(String, i32)> = query
            .clone()
            .order_by(Warehouse::REGION.asc())
            .order_by(Warehouse::CODE.asc())
            .all(&*db)
            .await
            .unwrap()
            .iter()
            .map(key)
            .collect();
        for size in [1, 2, 5] {
            assert_eq!(walk(&db, &query, size, key).await, expected);
        }
    }
}

#[tokio::test]
async fn rows_inserted_between_pages_neither_repeat_nor_skip_earlier_rows() {
    let db = gadget_db("keyset_insert").await;
    let query = Gadget::query().order_by(Gadget::N.asc());
    let before: Vec<i64> = query
        .clone()
        .order_by(Gadget::ID.asc())
        .all(&*db)
        .await
        .unwrap()
        .iter()
        .map(|g| g.id)
        .collect();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = query.page_after(&*db, after.as_ref(), 10).await.unwrap();
        seen.extend(page.items.iter().map(|g| g.id));
        pages += 1;
        if pages == 2 {
            // Rows before the cursor (n = 0) and after it (n = 9) arrive mid-walk.
            let new = |n| Gadget {
                id: 0,
                n,
                label: None,
                at: None,
            };
            Gadget::insert_many(&*db, &[new(0), new(0), new(9)])
                .await
                .unwrap();
        }
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a row was seen twice");
    // Every row that existed is seen, in the original order; the row inserted after
    // the cursor is seen too, the rows inserted before it are not.
    let old: Vec<i64> = seen
        .iter()
        .copied()
        .filter(|id| before.contains(id))
        .collect();
    assert_eq!(old, before);
    assert_eq!(seen.len(), before.len() + 1);
    // With offsets the same insert shifts the rows: page 3 repeats rows of page 2.
    let offset_query = Gadget::query().order_by(Gadget::N.asc());
    let p2 = offset_query.page(&*db, 2, 10).await.unwrap();
    Gadget::insert_many(
        &*db,
        &[Gadget {
            id: 0,
            n: 0,
            label: None,
            at: None,
        }],
    )
    .await
    .unwrap();
    let p3 = offset_query.page(&*db, 3, 10).await.unwrap();
    assert_eq!(
        p2.items.last().map(|g| g.id),
        p3.items.first().map(|g| g.id)
    );
}

#[tokio::test]
async fn offset_pages_carry_the_total_of_count() {
    let db = gadget_db("offset_pages").await;
    let query = Gadget::query()
        .filter(Gadget::N.lt(3))
        .order_by(Gadget::LABEL.desc());
    let total = query.count(&*db).await.unwrap();
    let all: Vec<i64> = query
        .clone()
        .order_by(Gadget::ID.asc())
        .all(&*db)
        .await
        .unwrap()
        .iter()
        .map(|g| g.id)
        .collect();
    let mut seen = Vec::new();
    let mut number = 1;
    loop {
        let (page, n) = count_queries(&db, query.page(&*db, number, 7)).await;
        let page = page.unwrap();
        assert_eq!(n, 2);
        assert_eq!(page.total, total);
        assert_eq!(page.pages(), total.div_ceil(7));
        seen.extend(page.items.iter().map(|g| g.id));
        if !page.has_next() {
            break;
        }
        number += 1;
    }
    assert_eq!(seen, all);
    let past = query.page(&*db, 100, 7).await.unwrap();
    assert!(past.items.is_empty());
    assert_eq!(past.total, total);

    // In a transaction the two statements are pipelined on its connection.
    let tx = db.begin().await.unwrap();
    let page = query.page(&tx, 1, 5).await.unwrap();
    assert_eq!((page.items.len(), page.total), (5, total));
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn keyset_pages_prefetch_once_per_edge_and_refuse_bad_input() {
    let db = shop_db("keyset_prefetch").await;
    let cs = customers(4);
    let cs = Customer::insert_many(&*db, &cs).await.unwrap();
    let orders: Vec<Order> = (0..9)
        .map(|i| order(cs[i % 4].id, "paid", (i * 10) as i64))
        .collect();
    Order::insert_many(&*db, &orders).await.unwrap();
    let query = Order::query()
        .order_by(Order::TOTAL_CENTS.desc())
        .prefetch(Order::CUSTOMER)
        .prefetch(Order::ITEMS);
    let (page, n) = count_queries(&db, query.page_after(&*db, None, 4)).await;
    let page = page.unwrap();
    assert_eq!(n, 3);
    assert!(page.items.iter().all(|o| o.customer.get().is_some()));
    let next = page.next.unwrap();

    // A cursor of another ordering, a malformed one, size 0, a limit, a joined tree.
    let other = Order::query().order_by(Order::TOTAL_CENTS.asc());
    let refused = |r: Result<_, Error>| matches!(r, Err(Error::InvalidInput(_)));
    assert!(refused(
        other.page_after(&*db, Some(&next), 4).await.map(|_| ())
    ));
    assert!(refused(Cursor::<Order>::from_token("zz").map(|_| ())));
    assert!(refused(Cursor::<Order>::from_token("7b7d").map(|_| ())));
    assert!(refused(query.page_after(&*db, None, 0).await.map(|_| ())));
    assert!(refused(
        query
            .clone()
            .limit(3)
            .page_after(&*db, None, 2)
            .await
            .map(|_| ())
    ));
    assert!(refused(
        Order::query()
            .select_related(Order::CUSTOMER)
            .page_after(&*db, None, 2)
            .await
            .map(|_| ())
    ));
    assert!(refused(query.page(&*db, 0, 5).await.map(|_| ())));
    assert!(refused(query.page(&*db, u64::MAX, 5).await.map(|_| ())));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn forged_cursors_are_bound_values_or_typed_errors() {
    let db = gadget_db("keyset_forged").await;
    let query = Gadget::query().order_by(Gadget::LABEL.asc());
    let first = query.page_after(&*db, None, 2).await.unwrap();
    let token = first.next.unwrap().to_token();
    let json = String::from_utf8(
        (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16).unwrap())
            .collect(),
    )
    .unwrap();
    let sig = serde_json::from_str::<serde_json::Value>(&json).unwrap()["o"]
        .as_str()
        .unwrap()
        .to_owned();
    let forge = |values: serde_json::Value| {
        let wire = serde_json::json!({ "o": sig, "v": values });
        Cursor::<Gadget>::from_token(&hex(wire.to_string().as_bytes())).unwrap()
    };
    // A hostile text value is a bound parameter: rows after it, nothing else.
    let hostile = forge(serde_json::json!([
        { "t": 25, "v": hex(b"l1'; DROP TABLE gadgets; --") },
        { "t": 20, "v": hex(&0i64.to_be_bytes()) },
    ]));
    let page = query.page_after(&*db, Some(&hostile), 100).await.unwrap();
    assert!(!page.items.is_empty());
    assert!(page
        .items
        .iter()
        .all(|g| g.label.as_deref().is_none_or(|l| l > "l1'")));
    assert_eq!(Gadget::query().count(&*db).await.unwrap(), 60);
    // A value of the wrong type is refused by the binding, not sent.
    let wrong = forge(serde_json::json!([
        { "t": 23, "v": hex(&7i32.to_be_bytes()) },
        { "t": 20, "v": hex(&0i64.to_be_bytes()) },
    ]));
    let err = query.page_after(&*db, Some(&wrong), 5).await.unwrap_err();
    assert!(err.to_string().contains("page cursor"), "{err}");
    // Too few values.
    let short = forge(serde_json::json!([{ "t": 20, "v": hex(&0i64.to_be_bytes()) }]));
    assert!(matches!(
        query.page_after(&*db, Some(&short), 5).await,
        Err(Error::InvalidInput(_))
    ));
}
