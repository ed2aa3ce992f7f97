//! Differential property test for `select_related`: on random shop data (NULL foreign
//! keys, empty child lists, composite keys and a many-to-many to a composite-key
//! target) and random relation trees, the graph loaded
//!
//! * with every edge joined (`select_related`: exactly ONE query),
//! * by the balanced default (`balanced`),
//! * with each path given to `select_related`, `balanced` or `prefetch` at random
//!   (the three trees merge into one plan),
//! * by prefetch, and
//! * by lazy per-instance fetches
//!
//! is the same graph (compared as `serde_json` values: not loaded = null), also with a
//! random limit and offset on the root, which must page the parents only.
//!
//! The data generator and the lazy walk are those of `prefetch_differential.rs`, whose
//! prefetch graphs are checked against the data itself.
//!
//! Case count: 24 by default, `PROPTEST_CASES` overrides it.

mod common;
mod differential;

use common::shop::*;
use differential::*;
use matrx_orm::prelude::*;
use matrx_orm::Select;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// How one path of a tree is added to the query.
#[derive(Debug, Clone, Copy)]
enum How {
    Joined,
    Balanced,
    Prefetch,
}

fn add<M: Model>(query: Select<M>, how: How, path: &str) -> Result<Select<M>, TestCaseError> {
    match how {
        How::Joined => query.select_related_path(path),
        How::Balanced => query.balanced_path(path),
        How::Prefetch => query.prefetch_path(path),
    }
    .map_err(|e| fail(path, e))
}

fn with_all<M: Model>(
    mut query: Select<M>,
    paths: &[&str],
    how: impl Fn(usize) -> How,
) -> Result<Select<M>, TestCaseError> {
    for (i, p) in paths.iter().enumerate() {
        query = add(query, how(i), p)?;
    }
    Ok(query)
}

fn json<M: serde::Serialize>(rows: &[M]) -> serde_json::Value {
    serde_json::to_value(rows).unwrap()
}

/// Every strategy on one root model, unpaged and paged.
#[allow(clippy::too_many_arguments)]
async fn check_root<M, W>(
    db: &Db,
    label: &str,
    query: Select<M>,
    paths: &[&'static str],
    mixed: &[How],
    page: (u64, u64),
    lazy: W,
) -> Result<(), TestCaseError>
where
    M: Model + serde::Serialize,
    W: for<'a> Fn(&'a Db, &'a M, &'a Tree) -> Walk<'a>,
{
    let tree = Tree::from_paths(paths);
    let how = |i: usize| mixed[i % mixed.len()];

    let prefetched = with_all(query.clone(), paths, |_| How::Prefetch)?
        .all(db)
        .await
        .map_err(|e| fail("prefetch", e))?;
    let expected = json(&prefetched);

    let before = db.query_count();
    let joined = with_all(query.clone(), paths, |_| How::Joined)?
        .all(db)
        .await
        .map_err(|e| fail("select_related", e))?;
    prop_assert_eq!(
        db.query_count() - before,
        1,
        "{}: {:?}: one query",
        label,
        paths
    );
    prop_assert_eq!(
        &json(&joined),
        &expected,
        "{}: select_related vs prefetch, {:?}",
        label,
        paths
    );

    let balanced = with_all(query.clone(), paths, |_| How::Balanced)?
        .all(db)
        .await
        .map_err(|e| fail("balanced", e))?;
    prop_assert_eq!(
        &json(&balanced),
        &expected,
        "{}: balanced vs prefetch, {:?}",
        label,
        paths
    );

    let mixed_rows = with_all(query.clone(), paths, how)?
        .all(db)
        .await
        .map_err(|e| fail("mixed", e))?;
    prop_assert_eq!(
        &json(&mixed_rows),
        &expected,
        "{}: mixed {:?} vs prefetch, {:?}",
        label,
        mixed,
        paths
    );

    let plain = query.all(db).await.map_err(|e| fail("query", e))?;
    for root in &plain {
        lazy(db, root, &tree).await.map_err(|e| fail("lazy", e))?;
    }
    prop_assert_eq!(
        &json(&plain),
        &expected,
        "{}: lazy vs prefetch, {:?}",
        label,
        paths
    );

    // Paging applies to the roots, not to their joined children.
    let (limit, offset) = page;
    let paged = query.clone().limit(limit).offset(offset);
    let expected_page: Vec<serde_json::Value> = expected
        .as_array()
        .unwrap()
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .cloned()
        .collect();
    let before = db.query_count();
    let joined = with_all(paged.clone(), paths, |_| How::Joined)?
        .all(db)
        .await
        .map_err(|e| fail("select_related paged", e))?;
    prop_assert_eq!(db.query_count() - before, 1);
    prop_assert_eq!(
        json(&joined),
        serde_json::Value::Array(expected_page.clone()),
        "{}: paged select_related",
        label
    );
    let balanced = with_all(paged, paths, |_| How::Balanced)?
        .all(db)
        .await
        .map_err(|e| fail("balanced paged", e))?;
    prop_assert_eq!(
        json(&balanced),
        serde_json::Value::Array(expected_page),
        "{}: paged balanced",
        label
    );
    Ok(())
}

async fn run_case(
    db: &Db,
    data: &Data,
    trees: [&[&'static str]; 3],
    mixed: &[How],
    page: (u64, u64),
) -> Result<(), TestCaseError> {
    data.insert(db).await.map_err(|e| fail("insert", e))?;
    let [order_paths, customer_paths, product_paths] = trees;
    check_root(
        db,
        "orders",
        Order::query().order_by(Order::ID.asc()),
        order_paths,
        mixed,
        page,
        |db, o, t| lazy_order(db, o, t),
    )
    .await?;
    check_root(
        db,
        "customers",
        Customer::query().order_by(Customer::ID.asc()),
        customer_paths,
        mixed,
        page,
        |db, c, t| lazy_customer(db, c, t),
    )
    .await?;
    check_root(
        db,
        "products",
        Product::query().order_by(Product::ID.desc()),
        product_paths,
        mixed,
        page,
        |db, p, t| lazy_product(db, p, t),
    )
    .await
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![Just(How::Joined), Just(How::Balanced), Just(How::Prefetch)]
}

#[test]
fn select_related_equals_prefetch_equals_lazy_loading() {
    let (rt, db, mut runner) = shop_runner("sr_differential");
    let picks = || vec(any::<Index>(), 1..5);
    let strategy = (
        raw(),
        picks(),
        picks(),
        picks(),
        vec(how(), 1..4),
        (0..6u64, 0..3u64),
    );
    let result = runner.run(&strategy, |(raw, po, pc, pp, mixed, page)| {
        let data = Data::from(&raw);
        let trees = [
            &pick(ORDER_PATHS, &po)[..],
            &pick(CUSTOMER_PATHS, &pc)[..],
            &pick(PRODUCT_PATHS, &pp)[..],
        ];
        rt.block_on(run_case(&db, &data, trees, &mixed, page))
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every path of each root at once on a fixed dataset with every relation kind
/// populated, so the widest trees always run.
#[tokio::test]
async fn every_path_at_once_on_a_fixed_dataset() {
    let db = common::test_db("sr_differential_fixed").await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let data = Data {
        customers: vec![None, Some(0), Some(1), Some(3), Some(2)],
        products: 3,
        tags: 3,
        warehouses: vec![("af".into(), 1), ("eu".into(), 1), ("eu".into(), 2)],
        orders: vec![0, 1, 1, 3, 4, 4, 4],
        items: vec![
            (9, 0, 0, 1),
            (8, 0, 2, 2),
            (7, 1, 1, 3),
            (6, 2, 0, 1),
            (5, 3, 2, 5),
            (4, 4, 2, 1),
            (3, 4, 1, 2),
            (2, 5, 0, 3),
            (1, 6, 0, 1),
        ],
        order_tags: [
            (0, 0),
            (0, 2),
            (1, 2),
            (3, 1),
            (4, 0),
            (4, 1),
            (4, 2),
            (6, 2),
        ]
        .into_iter()
        .collect(),
        stock: [
            ((0, 0), 5),
            ((0, 2), 7),
            ((0, 1), 1),
            ((1, 1), 9),
            ((2, 2), 3),
        ]
        .into_iter()
        .collect(),
        links: [(0, 2), (0, 0), (1, 0), (1, 1), (1, 2)]
            .into_iter()
            .collect(),
    };
    run_case(
        &db,
        &data,
        [ORDER_PATHS, CUSTOMER_PATHS, PRODUCT_PATHS],
        &[How::Joined, How::Balanced, How::Prefetch, How::Joined],
        (3, 1),
    )
    .await
    .unwrap();
}
