//! The filter DSL against a real server: every operator, combinations, SQL NULL
//! semantics, and the one-array-parameter shape of `is_in`.

mod common;
mod fixtures;

use common::count_queries;
use common::shop::*;
use fixtures::*;
use matrx_orm::prelude::*;

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "gadgets")]
pub struct Gadget {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub n: i32,
    pub name: String,
    pub label: Option<String>,
}

/// n = 1..=20; name "item-01".. (upper-case "ITEM-" for multiples of 5);
/// label "even" for even n, NULL for odd multiples of 3, "odd" otherwise.
fn seed_rows() -> Vec<Gadget> {
    (1..=20)
        .map(|n| Gadget {
            id: 0,
            n,
            name: if n % 5 == 0 {
                format!("ITEM-{n:02}")
            } else {
                format!("item-{n:02}")
            },
            label: if n % 2 == 0 {
                Some("even".into())
            } else if n % 3 == 0 {
                None
            } else {
                Some("odd".into())
            },
        })
        .collect()
}

async fn seeded(prefix: &str) -> (common::TestDb, Vec<Gadget>) {
    let db = common::test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*db, &[Gadget::META])
        .await
        .unwrap();
    let rows = Gadget::insert_many(&*db, &seed_rows()).await.unwrap();
    (db, rows)
}

/// The `n` of the rows matching `filter`, sorted; asserts the query is one statement.
async fn ns(db: &Db, filter: Filter<Gadget>) -> Vec<i32> {
    let (rows, count) = count_queries(db, async {
        Gadget::query().filter(filter).all(db).await.unwrap()
    })
    .await;
    assert_eq!(count, 1);
    let mut ns: Vec<i32> = rows.iter().map(|g| g.n).collect();
    ns.sort();
    ns
}

/// The `n` of the seed rows matching `pred`, sorted.
fn expect(rows: &[Gadget], pred: impl Fn(&Gadget) -> bool) -> Vec<i32> {
    let mut ns: Vec<i32> = rows.iter().filter(|g| pred(g)).map(|g| g.n).collect();
    ns.sort();
    ns
}

#[tokio::test]
async fn comparisons() {
    let (db, rows) = seeded("filters_cmp").await;
    assert_eq!(ns(&db, Gadget::N.eq(7)).await, vec![7]);
    assert_eq!(ns(&db, Gadget::N.ne(7)).await, expect(&rows, |g| g.n != 7));
    assert_eq!(ns(&db, Gadget::N.gt(17)).await, vec![18, 19, 20]);
    assert_eq!(ns(&db, Gadget::N.gte(17)).await, vec![17, 18, 19, 20]);
    assert_eq!(ns(&db, Gadget::N.lt(3)).await, vec![1, 2]);
    assert_eq!(ns(&db, Gadget::N.lte(3)).await, vec![1, 2, 3]);
    assert_eq!(ns(&db, Gadget::NAME.eq("item-04")).await, vec![4]);
    assert_eq!(
        ns(&db, Gadget::NAME.gt("item-18")).await,
        vec![19],
        "text compares by collation"
    );
    assert_eq!(ns(&db, Gadget::N.eq(99)).await, Vec::<i32>::new());
}

#[tokio::test]
async fn null_semantics_of_eq_ne_and_not() {
    let (db, rows) = seeded("filters_null").await;
    let nulls = expect(&rows, |g| g.label.is_none());
    assert_eq!(nulls, vec![3, 9, 15]);
    assert_eq!(ns(&db, Gadget::LABEL.is_null()).await, nulls);
    assert_eq!(
        ns(&db, Gadget::LABEL.is_not_null()).await,
        expect(&rows, |g| g.label.is_some())
    );
    // A NULL label matches neither `= 'even'` nor `<> 'even'`, nor the negation.
    assert_eq!(
        ns(&db, Gadget::LABEL.eq("even")).await,
        expect(&rows, |g| g.n % 2 == 0)
    );
    let odd = expect(&rows, |g| g.label.as_deref() == Some("odd"));
    assert_eq!(ns(&db, Gadget::LABEL.ne("even")).await, odd);
    assert_eq!(ns(&db, !Gadget::LABEL.eq("even")).await, odd);
    assert_eq!(
        ns(&db, Gadget::LABEL.not_in(["even".to_string()])).await,
        odd
    );
    // Spelled out to include NULLs.
    let not_even = expect(&rows, |g| g.label.as_deref() != Some("even"));
    assert_eq!(
        ns(&db, Gadget::LABEL.ne("even") | Gadget::LABEL.is_null()).await,
        not_even
    );
}

#[tokio::test]
async fn is_in_and_not_in() {
    let (db, rows) = seeded("filters_in").await;
    assert_eq!(ns(&db, Gadget::N.is_in([2, 4, 99])).await, vec![2, 4]);
    assert_eq!(
        ns(&db, Gadget::N.is_in(vec![5, 5, 5])).await,
        vec![5],
        "duplicates are harmless"
    );
    assert_eq!(
        ns(&db, Gadget::N.not_in([1, 2, 3])).await,
        expect(&rows, |g| g.n > 3)
    );
    assert_eq!(
        ns(&db, Gadget::NAME.is_in(["item-01", "ITEM-05", "item-05"])).await,
        vec![1, 5]
    );
    // Empty lists: IN () is false, NOT IN () is true.
    assert_eq!(
        ns(&db, Gadget::N.is_in(Vec::<i32>::new())).await,
        Vec::<i32>::new()
    );
    assert_eq!(ns(&db, Gadget::N.not_in(Vec::<i32>::new())).await.len(), 20);
    assert_eq!(
        ns(&db, Gadget::LABEL.is_in(["odd"])).await,
        expect(&rows, |g| g.label.as_deref() == Some("odd"))
    );

    // 1,000 values: one query, right answer.
    let many: Vec<i32> = (0..1000).map(|i| i * 3).collect();
    assert_eq!(
        ns(&db, Gadget::N.is_in(many.clone())).await,
        expect(&rows, |g| g.n % 3 == 0)
    );
    assert_eq!(
        ns(&db, Gadget::N.not_in(many)).await,
        expect(&rows, |g| g.n % 3 != 0)
    );
}

/// The statement text of `is_in` does not depend on the number of values: one
/// `= ANY($1)` with one array parameter, prepared once on the connection.
#[tokio::test]
async fn is_in_sends_one_array_parameter() {
    let (db, _) = seeded("filters_in_sql").await;
    let tx = db.begin().await.unwrap();
    for size in [1usize, 10, 1000, 5000] {
        let values: Vec<i32> = (0..size as i32).collect();
        let found = Gadget::query()
            .filter(Gadget::N.is_in(values))
            .count(&tx)
            .await
            .unwrap();
        assert_eq!(found, (size as u64 - 1).min(20), "n in 1..=20 below {size}");
    }
    let rows = tx
        .query_sql(
            "SELECT statement, parameter_types::text[] FROM pg_prepared_statements \
             WHERE statement LIKE '%gadgets%' AND statement LIKE '%ANY%' \
             AND statement NOT LIKE '%pg_prepared%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one prepared statement for every list size");
    let statement: String = rows[0].get(0);
    let types: Vec<String> = rows[0].get(1);
    assert!(statement.contains("= ANY($1)"), "{statement}");
    assert!(!statement.contains("$2"), "{statement}");
    assert_eq!(types, vec!["integer[]".to_string()]);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn like_ilike_and_between() {
    let (db, rows) = seeded("filters_like").await;
    assert_eq!(
        ns(&db, Gadget::NAME.like("item-1%")).await,
        vec![11, 12, 13, 14, 16, 17, 18, 19]
    );
    assert_eq!(
        ns(&db, Gadget::NAME.like("ITEM-%")).await,
        vec![5, 10, 15, 20]
    );
    assert_eq!(
        ns(&db, Gadget::NAME.ilike("item-1%")).await,
        (10..=19).collect::<Vec<_>>()
    );
    assert_eq!(
        ns(&db, Gadget::NAME.like("item-0_")).await,
        vec![1, 2, 3, 4, 6, 7, 8, 9]
    );
    assert_eq!(
        ns(&db, Gadget::NAME.like("item-0")).await,
        Vec::<i32>::new(),
        "LIKE is anchored"
    );
    assert_eq!(
        ns(&db, Gadget::LABEL.like("ev%")).await,
        expect(&rows, |g| g.n % 2 == 0)
    );
    assert_eq!(
        ns(&db, Gadget::N.between(5, 8)).await,
        vec![5, 6, 7, 8],
        "both ends included"
    );
    assert_eq!(ns(&db, Gadget::N.between(8, 5)).await, Vec::<i32>::new());
    assert_eq!(
        ns(&db, Gadget::NAME.between("item-18", "item-19")).await,
        vec![18, 19]
    );
    assert_eq!(ns(&db, !Gadget::N.between(2, 19)).await, vec![1, 20]);
}

#[tokio::test]
async fn and_or_not_and_their_operators() {
    let (db, rows) = seeded("filters_bool").await;
    let a = || Gadget::N.gt(10);
    let b = || Gadget::LABEL.eq("even");
    let c = || Gadget::NAME.like("ITEM%");
    let pa = |g: &Gadget| g.n > 10;
    let pb = |g: &Gadget| g.label.as_deref() == Some("even");
    let pc = |g: &Gadget| g.name.starts_with("ITEM");

    assert_eq!(ns(&db, a() & b()).await, expect(&rows, |g| pa(g) && pb(g)));
    assert_eq!(
        ns(&db, a().and(b())).await,
        expect(&rows, |g| pa(g) && pb(g))
    );
    assert_eq!(ns(&db, a() | c()).await, expect(&rows, |g| pa(g) || pc(g)));
    assert_eq!(
        ns(&db, a().or(c())).await,
        expect(&rows, |g| pa(g) || pc(g))
    );
    assert_eq!(ns(&db, !a()).await, expect(&rows, |g| !pa(g)));
    assert_eq!(ns(&db, a().not()).await, expect(&rows, |g| !pa(g)));
    // Precedence follows the tree, not the text: (a | b) & c differs from a | (b & c).
    assert_eq!(
        ns(&db, (a() | b()) & c()).await,
        expect(&rows, |g| (pa(g) || pb(g)) && pc(g))
    );
    assert_eq!(
        ns(&db, a() | (b() & c())).await,
        expect(&rows, |g| pa(g) || (pb(g) && pc(g)))
    );
    assert_eq!(
        ns(&db, !(a() | c()) & b()).await,
        expect(&rows, |g| !(pa(g) || pc(g)) && pb(g))
    );
    assert_eq!(
        ns(&db, (a() & b()) | (!a() & c())).await,
        expect(&rows, |g| (pa(g) && pb(g)) || (!pa(g) && pc(g)))
    );
    assert_eq!(ns(&db, !!a()).await, expect(&rows, pa));
    // Chains flatten without changing meaning.
    assert_eq!(
        ns(&db, a() & b() & c()).await,
        expect(&rows, |g| pa(g) && pb(g) && pc(g))
    );
    assert_eq!(
        ns(&db, a() | b() | c()).await,
        expect(&rows, |g| pa(g) || pb(g) || pc(g))
    );
    assert_eq!(
        ns(&db, (a() | b()) & (b() | c())).await,
        expect(&rows, |g| (pa(g) || pb(g)) && (pb(g) || pc(g)))
    );

    // filter() calls AND together; exclude() negates.
    let got = Gadget::query()
        .filter(a() | c())
        .filter(!b())
        .exclude(Gadget::N.eq(15))
        .all(&*db)
        .await
        .unwrap();
    let mut got: Vec<i32> = got.iter().map(|g| g.n).collect();
    got.sort();
    assert_eq!(
        got,
        expect(&rows, |g| (pa(g) || pc(g))
            && g.label.as_deref() != Some("even")
            && g.label.is_some()
            && g.n != 15)
    );
    // A filter is reusable (Clone).
    let f = a() & b();
    assert_eq!(ns(&db, f.clone()).await, ns(&db, f).await);
}

#[tokio::test]
async fn empty_all_is_true_and_empty_any_is_false() {
    let (db, rows) = seeded("filters_empty").await;
    let everything: Vec<i32> = (1..=20).collect();
    assert_eq!(ns(&db, Filter::all([])).await, everything);
    assert_eq!(ns(&db, Filter::any([])).await, Vec::<i32>::new());
    assert_eq!(ns(&db, !Filter::all([])).await, Vec::<i32>::new());
    assert_eq!(ns(&db, !Filter::any([])).await, everything);
    assert_eq!(ns(&db, Filter::all([]) & Gadget::N.lt(3)).await, vec![1, 2]);
    assert_eq!(ns(&db, Filter::any([]) | Gadget::N.lt(3)).await, vec![1, 2]);
    assert_eq!(ns(&db, Filter::all([]) | Gadget::N.lt(3)).await, everything);
    assert_eq!(
        ns(&db, Filter::any([]) & Gadget::N.lt(3)).await,
        Vec::<i32>::new()
    );
    assert_eq!(
        ns(&db, Gadget::N.lt(3) & Filter::any([])).await,
        Vec::<i32>::new()
    );
    assert_eq!(ns(&db, Gadget::N.lt(3) | Filter::all([])).await, everything);
    assert_eq!(
        ns(&db, Filter::all([Gadget::N.gt(2), Gadget::N.lt(6)])).await,
        expect(&rows, |g| g.n > 2 && g.n < 6)
    );
    assert_eq!(
        ns(&db, Filter::any([Gadget::N.eq(2), Gadget::N.eq(6)])).await,
        vec![2, 6]
    );
    assert_eq!(
        ns(&db, Filter::any([Filter::all([]), Filter::any([])])).await,
        everything
    );
    // The empty forms work in every terminal.
    assert_eq!(
        Gadget::query()
            .filter(Filter::any([]))
            .count(&*db)
            .await
            .unwrap(),
        0
    );
    assert!(!Gadget::query()
        .filter(Filter::any([]))
        .exists(&*db)
        .await
        .unwrap());
    assert!(Gadget::query()
        .filter(Filter::any([]))
        .delete(&*db)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        Gadget::query()
            .exclude(Filter::any([]))
            .count(&*db)
            .await
            .unwrap(),
        20
    );
    assert_eq!(
        Gadget::query()
            .filter(Filter::all([]))
            .count(&*db)
            .await
            .unwrap(),
        20
    );
}

#[tokio::test]
async fn filters_on_composite_key_models() {
    let db = shop_db("filters_composite").await;
    let p = product("s", "p", 1).insert(&*db).await.unwrap();
    let q = product("t", "q", 1).insert(&*db).await.unwrap();
    let whs: Vec<Warehouse> = [("af", 1), ("af", 2), ("eu", 1), ("eu", 2)]
        .iter()
        .map(|(r, c)| warehouse(r, *c, "w"))
        .collect();
    Warehouse::insert_many(&*db, &whs).await.unwrap();
    let mut stocks = Vec::new();
    for (i, w) in whs.iter().enumerate() {
        stocks.push(stock(p.id, &w.region, w.code, i as i32));
        stocks.push(stock(q.id, &w.region, w.code, 10 + i as i32));
    }
    Stock::insert_many(&*db, &stocks).await.unwrap();
    let found = Stock::query()
        .filter(Stock::REGION.eq("eu") & Stock::CODE.is_in([2]) & Stock::PRODUCT_ID.eq(q.id))
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(found, vec![stock(q.id, "eu", 2, 13)]);
    let key_pairs =
        (Stock::REGION.eq("af") & Stock::CODE.eq(1)) | (Stock::REGION.eq("eu") & Stock::CODE.eq(2));
    let found = Stock::query()
        .filter(key_pairs)
        .filter(Stock::QTY.lt(10))
        .order_by(Stock::QTY.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(found.iter().map(|s| s.qty).collect::<Vec<_>>(), vec![0, 3]);
    assert_eq!(
        Stock::query()
            .filter(Stock::PRODUCT_ID.not_in([p.id]))
            .count(&*db)
            .await
            .unwrap(),
        4
    );
}

/// `exclude` is documented as "drops rows matching `filter`". A row whose label is
/// NULL does not match `label = 'even'` (see `null_semantics_of_eq_ne_and_not`), so
/// `exclude` must keep it; rendering `NOT (cond)` drops it too.
#[tokio::test]
async fn exclude_keeps_rows_where_the_condition_is_unknown() {
    let (db, rows) = seeded("filters_exclude_null").await;
    let kept = Gadget::query()
        .exclude(Gadget::LABEL.eq("even"))
        .all(&*db)
        .await
        .unwrap();
    let mut kept: Vec<i32> = kept.iter().map(|g| g.n).collect();
    kept.sort();
    let matching = ns(&db, Gadget::LABEL.eq("even")).await;
    assert_eq!(
        kept,
        expect(&rows, |g| !matching.contains(&g.n)),
        "exclude(f) must return exactly the rows filter(f) does not"
    );
}
