//! Differential property test for the statement shapes of `select_related`: the union
//! shape (one `UNION ALL` branch of plain rows per edge, with to-one edges as branches
//! or joined into their parent's branch; customised edges joined into their parent's
//! branch as aggregates), the set-oriented aggregate (the children of every parent
//! aggregated once, `GROUP BY` the parent key, joined back by key) and the `LATERAL`
//! subquery per parent, which an edge with a limit per parent keeps, as do the to-many
//! edges below a grouped one. On random shop data (NULL foreign keys, empty child
//! lists, composite keys) and customised trees, the graph loaded
//!
//! * by `select_related` (the union shape, exactly ONE query, in both to-one choices),
//! * by `select_related` in the aggregate shape (grouped: exactly ONE query),
//! * by `select_related` with a limit per parent too large to cut anything on every
//!   to-many edge (the `LATERAL` shape, also ONE query), and
//! * by prefetch
//!
//! is the same graph (compared as `serde_json` values), unpaged (parents' keys as a
//! semi-join) and paged (keys as one array), with:
//!
//! * a composite primary key as the source of a has-many (stock by `(region, code)`)
//!   and of a many-to-many (products through `product_warehouses`),
//! * filters and orderings on to-many edges at several depths, a to-many edge under a
//!   to-one edge (with NULL foreign keys), a to-many edge under a to-many edge under a
//!   to-one edge, many-to-many edges to and from composite keys.
//!
//! Case count: 24 by default, `PROPTEST_CASES` overrides it.

mod common;
mod differential;

use common::shop::*;
use differential::*;
use matrx_orm::prelude::*;
use matrx_orm::{AggregateEncoding, IntoPrefetch, JoinedShape, Path, Relation, Select};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The shop's warehouses seen from the other side: a composite primary key as the
/// source of a has_many and of a many-to-many.
#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "warehouses")]
pub struct Depot {
    #[orm(primary_key)]
    pub region: String,
    #[orm(primary_key)]
    pub code: i32,
    pub name: String,
    #[orm(has_many(foreign_key = "region, code"))]
    pub stock: Many<Stock>,
    #[orm(many_to_many(
        through = "product_warehouses",
        source = "region, code",
        target = "product_id"
    ))]
    pub products: Many<Product>,
}

/// A limit per parent that never cuts: it only moves the edge to the `LATERAL` shape.
const UNCUT: u64 = 1_000_000;

/// How a tree is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// `prefetch`: the reference.
    Prefetch,
    /// `select_related`, the union shape (the default).
    Union,
    /// `select_related`, the union shape with to-one edges joined into their
    /// parent's branch.
    UnionToOneJoined,
    /// `select_related` in the aggregate shape, every to-many edge grouped.
    Grouped,
    /// `select_related`, every to-many edge limited by [`UNCUT`]: the `LATERAL` shape.
    Lateral,
}

impl How {
    fn add<M: Model>(self, query: Select<M>, tree: impl IntoPrefetch<M>) -> Select<M> {
        match self {
            How::Prefetch => query.prefetch(tree),
            How::Union => query.select_related(tree),
            How::UnionToOneJoined => query
                .select_related(tree)
                .joined_shape(JoinedShape::UnionToOneJoined),
            How::Grouped | How::Lateral => query
                .select_related(tree)
                .joined_shape(JoinedShape::Aggregates),
        }
    }

    /// The edge `rel`, limited by [`UNCUT`] for the `LATERAL` shape.
    fn many<R: Relation>(self, _rel: R) -> Path<R> {
        let path = Path::new();
        if self == How::Lateral {
            path.limit_per_parent(UNCUT)
        } else {
            path
        }
    }
}

fn json<M: serde::Serialize>(rows: &[M]) -> serde_json::Value {
    serde_json::to_value(rows).unwrap()
}

/// One tree loaded the three ways (see the module docs), unpaged and paged.
async fn check<M: Model + serde::Serialize>(
    db: &Db,
    label: &str,
    query: impl Fn(How) -> Select<M>,
    page: (u64, u64),
) -> Result<(), TestCaseError> {
    let expected = json(
        &query(How::Prefetch)
            .all(db)
            .await
            .map_err(|e| fail("prefetch", e))?,
    );
    let (limit, offset) = page;
    let expected_page: Vec<serde_json::Value> = expected
        .as_array()
        .unwrap()
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .cloned()
        .collect();
    for how in [
        How::Union,
        How::UnionToOneJoined,
        How::Grouped,
        How::Lateral,
    ] {
        let sql = query(how)
            .joined_statement(AggregateEncoding::Records)
            .map_err(|e| fail("statement", e))?;
        match how {
            How::Lateral => {
                prop_assert!(!sql.text.contains(" GROUP BY "), "{}: {}", label, sql.text)
            }
            // The depots' top edges are ordered per parent: no branch fits there; the
            // customers' only unordered to-many edge is below a to-one edge, a branch
            // only when to-one edges are.
            How::Union | How::UnionToOneJoined => prop_assert!(
                sql.text.starts_with("WITH \"__root\" AS ")
                    && sql.text.contains(" UNION ALL ")
                        == match how {
                            How::Union => label != "depots",
                            _ => label == "orders",
                        },
                "{}: {}",
                label,
                sql.text
            ),
            _ => prop_assert!(
                sql.text.starts_with("WITH \"__root\" AS ") && sql.text.contains(" GROUP BY "),
                "{}: {}",
                label,
                sql.text
            ),
        }
        let before = db.query_count();
        let got = query(how).all(db).await.map_err(|e| fail(label, e))?;
        prop_assert_eq!(db.query_count() - before, 1, "{}: one query", label);
        prop_assert_eq!(&json(&got), &expected, "{} {:?}", label, how);

        let before = db.query_count();
        let got = query(how)
            .limit(limit)
            .offset(offset)
            .all(db)
            .await
            .map_err(|e| fail(label, e))?;
        prop_assert_eq!(db.query_count() - before, 1, "{}: one query, paged", label);
        prop_assert_eq!(
            json(&got),
            serde_json::Value::Array(expected_page.clone()),
            "{} {:?} paged",
            label,
            how
        );
    }
    Ok(())
}

async fn run_case(db: &Db, data: &Data, page: (u64, u64)) -> Result<(), TestCaseError> {
    data.insert(db).await.map_err(|e| fail("insert", e))?;

    // Composite keys as the source of a has-many and of a many-to-many, customised
    // edges below them.
    check(
        db,
        "depots",
        |how| {
            let q = Depot::query()
                .order_by(Depot::REGION.asc())
                .order_by(Depot::CODE.asc());
            let q = how.add(
                q,
                how.many(Depot::STOCK)
                    .filter(Stock::QTY.gte(10))
                    .order_by(Stock::QTY.desc())
                    .order_by(Stock::PRODUCT_ID.asc())
                    .with(
                        Stock::PRODUCT.with(how.many(Product::WAREHOUSES)).with(
                            how.many(Product::STOCK)
                                .order_by(Stock::QTY.asc())
                                .order_by(Stock::REGION.asc())
                                .order_by(Stock::CODE.asc())
                                .order_by(Stock::PRODUCT_ID.asc()),
                        ),
                    ),
            );
            how.add(
                q,
                how.many(Depot::PRODUCTS)
                    .order_by(Product::PRICE_CENTS.desc())
                    .order_by(Product::ID.asc())
                    .with(how.many(Product::STOCK).with(Stock::WAREHOUSE)),
            )
        },
        page,
    )
    .await?;

    // A to-many edge under a to-one edge with NULL foreign keys; to-many under
    // to-many; filters and orderings at several depths.
    check(
        db,
        "customers",
        |how| {
            let q = Customer::query().order_by(Customer::ID.desc());
            let q = how.add(
                q,
                Customer::REFERRER.with(
                    how.many(Customer::ORDERS)
                        .filter(Order::TOTAL_CENTS.gt(2))
                        .with(how.many(Order::TAGS)),
                ),
            );
            how.add(
                q,
                how.many(Customer::ORDERS)
                    .order_by(Order::PLACED_AT.desc())
                    .order_by(Order::ID.asc())
                    .with(
                        how.many(Order::ITEMS)
                            .filter(OrderItem::QUANTITY.gte(2))
                            .with(
                                OrderItem::PRODUCT
                                    .with(how.many(Product::STOCK).filter(Stock::QTY.lt(70))),
                            ),
                    )
                    .with(how.many(Order::TAGS).order_by(Tag::ID.desc())),
            )
        },
        page,
    )
    .await?;

    // A to-many edge under a to-one edge under the root, with a to-many below it; the
    // root's own items and many-to-many.
    check(
        db,
        "orders",
        |how| {
            let q = Order::query().order_by(Order::ID.asc());
            let q = how.add(
                q,
                Order::CUSTOMER.with(how.many(Customer::ORDERS).with(how.many(Order::ITEMS))),
            );
            let q = how.add(
                q,
                how.many(Order::ITEMS)
                    .with(OrderItem::PRODUCT.with(how.many(Product::WAREHOUSES))),
            );
            how.add(q, how.many(Order::TAGS))
        },
        page,
    )
    .await
}

#[test]
fn union_grouped_and_lateral_shapes_equal_prefetch() {
    let (rt, db, mut runner) = shop_runner("sr_shapes");
    let strategy = (raw(), (0..6u64, 0..3u64));
    let result = runner.run(&strategy, |(raw, page)| {
        let data = Data::from(&raw);
        rt.block_on(run_case(&db, &data, page))
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}
