//! Property tests of the SQL the library writes, run against the real server.
//!
//! * Filters: random trees (`&`, `|`, `!`, `Filter::all`/`any`, `exclude`) over every
//!   operator on columns of many types, with hostile and extreme values, plus random
//!   ordering, limit and offset. The rendered text binds every value (`$1..$n`, as many
//!   as there are parameters; no value and no digit outside a placeholder in the text),
//!   PostgreSQL accepts it, and it means what it says: `count` agrees with `all`, and a
//!   filter and its `exclude` partition the table. Update and delete by the same filter
//!   touch exactly the rows it selects.
//! * Relation edges: random prefetch trees over FK, IFK, M2M and composite-key
//!   relations, each edge with a random filter, ordering and limit per parent, loaded
//!   batched, joined and balanced with random per-edge overrides: every statement binds
//!   its values, the query count stays within one per edge, and every strategy builds
//!   the same object graph.
//! * Relation paths: random strings never panic; a path parses exactly when each
//!   segment names a relation of the model before it.
//!
//! Seeded and reproducible (`MATRX_FAULT_SEED` replays another seed).

mod common;
mod fixtures;
mod reliability;

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::shop::*;
use common::TestDb;
use matrx_orm::prelude::*;
use matrx_orm::{Column, IntoPrefetch, Prefetch, Select};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use reliability::{hostile, placeholders, SqlLog, MARKER};
use rust_decimal::Decimal;

fn runner(test: &str, cases: u32) -> TestRunner {
    let seed = reliability::seed(test).to_le_bytes();
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed[i % 8] ^ (i as u8);
    }
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ----- filters ------------------------------------------------------------------------------

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "fz_rows")]
pub struct Fz {
    #[orm(primary_key)]
    pub id: i64,
    pub small: i32,
    pub txt: String,
    pub opt_txt: Option<String>,
    pub flag: bool,
    pub real: f64,
    pub at: DateTime<Utc>,
    pub day: NaiveDate,
    pub uid: uuid::Uuid,
    pub amount: Decimal,
    pub opt_num: Option<i64>,
    pub labels: Vec<String>,
    pub doc: serde_json::Value,
}

/// Words the data holds, so generated filters often match something.
fn words() -> Vec<String> {
    let mut w: Vec<String> = ["alpha", "Beta", "gamma%", "del_ta", "ALPHA"]
        .iter()
        .map(|s| format!("{s}{MARKER}"))
        .collect();
    w.extend(hostile().into_iter().take(12));
    w
}

const FLOATS: [f64; 9] = [
    0.0,
    -0.0,
    1.5,
    -2.25,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e308,
    -1e-300,
];
const ROWS: i64 = 40;

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn fz_row(i: i64) -> Fz {
    let w = words();
    let i_ = i as usize;
    Fz {
        id: i,
        small: (i as i32 % 7) - 3,
        txt: w[i_ % w.len()].clone(),
        opt_txt: (i % 3 != 0).then(|| w[(i_ * 5) % w.len()].clone()),
        flag: i % 2 == 0,
        real: FLOATS[i_ % FLOATS.len()],
        at: ts(1_700_000_000 + (i % 9) * 86_400 - 4 * 86_400),
        day: NaiveDate::from_ymd_opt(2000 + (i % 30) as i32, 1 + (i % 12) as u32, 1).unwrap(),
        uid: uuid::Uuid::from_u128((i % 5) as u128),
        amount: Decimal::new(i * 137 - 2000, (i % 4) as u32),
        opt_num: (i % 4 != 0).then_some(i * i - 100),
        labels: vec![w[i_ % 3].clone(), w[(i_ + 1) % 5].clone()],
        doc: serde_json::json!({ "k": w[i_ % w.len()], "n": i }),
    }
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
enum Leaf {
    Id(Cmp, i64),
    Small(Cmp, i32),
    Txt(Cmp, String),
    Like(bool, String),
    OptTxt(Cmp, String),
    OptTxtNull(bool),
    Flag(bool, bool),
    Real(Cmp, f64),
    At(Cmp, i64),
    Day(Cmp, i32),
    Uid(bool, u128),
    Amount(Cmp, i64, u32),
    OptNum(Cmp, i64),
    OptNumNull(bool),
    IdIn(bool, Vec<i64>),
    TxtIn(bool, Vec<String>),
    RealIn(Vec<f64>),
    SmallBetween(i32, i32),
    TxtBetween(String, String),
    Labels(bool, Vec<String>),
    Doc(String),
}

#[derive(Debug, Clone)]
enum Tree {
    Leaf(Leaf),
    And(Vec<Tree>),
    Or(Vec<Tree>),
    Not(Box<Tree>),
    All(Vec<Tree>),
    Any(Vec<Tree>),
}

#[derive(Debug, Clone)]
struct Case {
    steps: Vec<(bool, Tree)>,
    order: Vec<(usize, bool, u8)>,
    limit: Option<u64>,
    offset: Option<u64>,
    write: bool,
}

fn cmp() -> impl Strategy<Value = Cmp> {
    prop_oneof![
        Just(Cmp::Eq),
        Just(Cmp::Ne),
        Just(Cmp::Gt),
        Just(Cmp::Gte),
        Just(Cmp::Lt),
        Just(Cmp::Lte)
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(words()),
        1 => prop::sample::select(hostile()),
        1 => proptest::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..6)
            .prop_map(|cs| cs.into_iter().chain([MARKER]).collect::<String>()),
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![4 => -5i64..50, 1 => Just(i64::MIN), 1 => Just(i64::MAX), 1 => any::<i64>()]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![prop::sample::select(FLOATS.to_vec()), -10.0f64..10.0]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        (cmp(), int()).prop_map(|(c, v)| Leaf::Id(c, v)),
        (cmp(), prop_oneof![-5i32..5, Just(i32::MIN), Just(i32::MAX)])
            .prop_map(|(c, v)| Leaf::Small(c, v)),
        (cmp(), text()).prop_map(|(c, v)| Leaf::Txt(c, v)),
        (any::<bool>(), text()).prop_map(|(i, v)| Leaf::Like(i, v)),
        (cmp(), text()).prop_map(|(c, v)| Leaf::OptTxt(c, v)),
        any::<bool>().prop_map(Leaf::OptTxtNull),
        (any::<bool>(), any::<bool>()).prop_map(|(e, v)| Leaf::Flag(e, v)),
        (cmp(), float()).prop_map(|(c, v)| Leaf::Real(c, v)),
        (cmp(), -4_000_000_000i64..4_000_000_000).prop_map(|(c, v)| Leaf::At(c, v)),
        (cmp(), 1990i32..2040).prop_map(|(c, v)| Leaf::Day(c, v)),
        (any::<bool>(), 0u128..6).prop_map(|(e, v)| Leaf::Uid(e, v)),
        (cmp(), int(), 0u32..8).prop_map(|(c, m, s)| Leaf::Amount(c, m, s)),
        (cmp(), int()).prop_map(|(c, v)| Leaf::OptNum(c, v)),
        any::<bool>().prop_map(Leaf::OptNumNull),
        (any::<bool>(), proptest::collection::vec(int(), 0..6)).prop_map(|(n, v)| Leaf::IdIn(n, v)),
        (any::<bool>(), proptest::collection::vec(text(), 0..5))
            .prop_map(|(n, v)| Leaf::TxtIn(n, v)),
        proptest::collection::vec(float(), 0..4).prop_map(Leaf::RealIn),
        (-5i32..5, -5i32..5).prop_map(|(a, b)| Leaf::SmallBetween(a, b)),
        (text(), text()).prop_map(|(a, b)| Leaf::TxtBetween(a, b)),
        (any::<bool>(), proptest::collection::vec(text(), 0..3))
            .prop_map(|(e, v)| Leaf::Labels(e, v)),
        text().prop_map(Leaf::Doc),
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    leaf()
        .prop_map(Tree::Leaf)
        .prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Tree::And),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Tree::Or),
                inner.clone().prop_map(|t| Tree::Not(Box::new(t))),
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Tree::All),
                proptest::collection::vec(inner, 0..3).prop_map(Tree::Any),
            ]
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec((any::<bool>(), tree()), 1..3),
        proptest::collection::vec((0usize..10, any::<bool>(), 0u8..3), 0..3),
        proptest::option::of(0u64..50),
        proptest::option::of(0u64..50),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(steps, order, limit, offset, write)| Case {
            steps,
            order,
            limit,
            offset,
            write,
        })
}

fn compare<T>(column: Column<Fz, T>, c: Cmp, v: T) -> Filter<Fz>
where
    T: tokio_postgres::types::ToSql + Send + Sync + 'static,
{
    match c {
        Cmp::Eq => column.eq(v),
        Cmp::Ne => column.ne(v),
        Cmp::Gt => column.gt(v),
        Cmp::Gte => column.gte(v),
        Cmp::Lt => column.lt(v),
        Cmp::Lte => column.lte(v),
    }
}

fn leaf_filter(leaf: &Leaf) -> Filter<Fz> {
    match leaf.clone() {
        Leaf::Id(c, v) => compare(Fz::ID, c, v),
        Leaf::Small(c, v) => compare(Fz::SMALL, c, v),
        Leaf::Txt(c, v) => compare(Fz::TXT, c, v),
        Leaf::Like(false, v) => Fz::TXT.like(v),
        Leaf::Like(true, v) => Fz::OPT_TXT.ilike(v),
        Leaf::OptTxt(c, v) => compare(Fz::OPT_TXT, c, v),
        Leaf::OptTxtNull(true) => Fz::OPT_TXT.is_null(),
        Leaf::OptTxtNull(false) => Fz::OPT_TXT.is_not_null(),
        Leaf::Flag(true, v) => Fz::FLAG.eq(v),
        Leaf::Flag(false, v) => Fz::FLAG.ne(v),
        Leaf::Real(c, v) => compare(Fz::REAL, c, v),
        Leaf::At(c, v) => compare(Fz::AT, c, ts(v)),
        Leaf::Day(c, y) => compare(Fz::DAY, c, NaiveDate::from_ymd_opt(y, 6, 15).unwrap()),
        Leaf::Uid(true, v) => Fz::UID.eq(uuid::Uuid::from_u128(v)),
        Leaf::Uid(false, v) => Fz::UID.ne(uuid::Uuid::from_u128(v)),
        Leaf::Amount(c, m, s) => compare(Fz::AMOUNT, c, Decimal::new(m, s)),
        Leaf::OptNum(c, v) => compare(Fz::OPT_NUM, c, v),
        Leaf::OptNumNull(true) => Fz::OPT_NUM.is_null(),
        Leaf::OptNumNull(false) => Fz::OPT_NUM.is_not_null(),
        Leaf::IdIn(false, v) => Fz::ID.is_in(v),
        Leaf::IdIn(true, v) => Fz::OPT_NUM.not_in(v),
        Leaf::TxtIn(false, v) => Fz::TXT.is_in(v),
        Leaf::TxtIn(true, v) => Fz::OPT_TXT.not_in(v),
        Leaf::RealIn(v) => Fz::REAL.is_in(v),
        Leaf::SmallBetween(a, b) => Fz::SMALL.between(a, b),
        Leaf::TxtBetween(a, b) => Fz::TXT.between(a, b),
        Leaf::Labels(true, v) => Fz::LABELS.eq(v),
        Leaf::Labels(false, v) => Fz::LABELS.ne(v),
        Leaf::Doc(v) => Fz::DOC.ne(serde_json::json!({ "k": v })),
    }
}

fn filter(tree: &Tree) -> Filter<Fz> {
    let list = |ts: &[Tree]| ts.iter().map(filter).collect::<Vec<_>>();
    match tree {
        Tree::Leaf(l) => leaf_filter(l),
        Tree::And(ts) => list(ts)
            .into_iter()
            .reduce(|a, b| a & b)
            .unwrap_or_else(|| Filter::all([])),
        Tree::Or(ts) => list(ts)
            .into_iter()
            .reduce(|a, b| a | b)
            .unwrap_or_else(|| Filter::any([])),
        Tree::Not(t) => !filter(t),
        Tree::All(ts) => Filter::all(list(ts)),
        Tree::Any(ts) => Filter::any(list(ts)),
    }
}

fn order(index: usize, desc: bool, nulls: u8) -> matrx_orm::OrderBy<Fz> {
    let o = match (index, desc) {
        (0, false) => Fz::ID.asc(),
        (0, true) => Fz::ID.desc(),
        (1, d) => {
            if d {
                Fz::SMALL.desc()
            } else {
                Fz::SMALL.asc()
            }
        }
        (2, d) => {
            if d {
                Fz::TXT.desc()
            } else {
                Fz::TXT.asc()
            }
        }
        (3, d) => {
            if d {
                Fz::OPT_TXT.desc()
            } else {
                Fz::OPT_TXT.asc()
            }
        }
        (4, d) => {
            if d {
                Fz::FLAG.desc()
            } else {
                Fz::FLAG.asc()
            }
        }
        (5, d) => {
            if d {
                Fz::REAL.desc()
            } else {
                Fz::REAL.asc()
            }
        }
        (6, d) => {
            if d {
                Fz::AT.desc()
            } else {
                Fz::AT.asc()
            }
        }
        (7, d) => {
            if d {
                Fz::UID.desc()
            } else {
                Fz::UID.asc()
            }
        }
        (8, d) => {
            if d {
                Fz::AMOUNT.desc()
            } else {
                Fz::AMOUNT.asc()
            }
        }
        (_, d) => {
            if d {
                Fz::OPT_NUM.desc()
            } else {
                Fz::OPT_NUM.asc()
            }
        }
    };
    match nulls {
        1 => o.nulls_first(),
        2 => o.nulls_last(),
        _ => o,
    }
}

fn query(case: &Case) -> Select<Fz> {
    let mut q = Fz::query();
    for (exclude, t) in &case.steps {
        q = if *exclude {
            q.exclude(filter(t))
        } else {
            q.filter(filter(t))
        };
    }
    for &(i, d, n) in &case.order {
        q = q.order_by(order(i, d, n));
    }
    if let Some(n) = case.limit {
        q = q.limit(n);
    }
    if let Some(n) = case.offset {
        q = q.offset(n);
    }
    q
}

/// The text with its placeholders removed holds no digit: no number was spliced.
fn no_digits_outside_placeholders(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        if bytes[i].is_ascii_digit() {
            return false;
        }
        i += 1;
    }
    true
}

async fn check_case(db: &Db, case: &Case) -> Result<(), TestCaseError> {
    let q = query(case);
    let sql = q
        .to_sql()
        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let seen = placeholders(&sql.text);
    prop_assert_eq!(
        seen,
        (1..=sql.params.len()).collect::<Vec<_>>(),
        "placeholders are $1..$n with n = {} params: {}",
        sql.params.len(),
        sql.text
    );
    prop_assert!(
        !sql.text.contains(MARKER),
        "a value in the text: {}",
        sql.text
    );
    prop_assert!(
        no_digits_outside_placeholders(&sql.text),
        "a number in the text: {}",
        sql.text
    );
    let fail = |what: &str, e: matrx_orm::Error| {
        TestCaseError::fail(format!("{what}: {e:?}\nSQL: {}", sql.text))
    };
    let rows = q.all(db).await.map_err(|e| fail("all", e))?;
    let count = q.count(db).await.map_err(|e| fail("count", e))?;
    prop_assert_eq!(count as usize, rows.len(), "count agrees with all");
    if case.limit.is_none() && case.offset.is_none() {
        let exists = q.exists(db).await.map_err(|e| fail("exists", e))?;
        prop_assert_eq!(exists, !rows.is_empty());
    }
    // A filter and its exclusion partition the table; NOT leaves out the NULLs.
    let t = &case.steps[0].1;
    let selected = Fz::query()
        .filter(filter(t))
        .count(db)
        .await
        .map_err(|e| fail("filter", e))?;
    let excluded = Fz::query()
        .exclude(filter(t))
        .count(db)
        .await
        .map_err(|e| fail("exclude", e))?;
    prop_assert_eq!(
        selected + excluded,
        ROWS as u64,
        "filter + exclude = all rows"
    );
    let negated = Fz::query()
        .filter(!filter(t))
        .count(db)
        .await
        .map_err(|e| fail("not", e))?;
    prop_assert!(negated <= excluded);
    if case.write {
        // Update and delete by the same filter touch exactly its rows (rolled back).
        let tx = db.begin().await.map_err(|e| fail("begin", e))?;
        let updated = Fz::query()
            .filter(filter(t))
            .update()
            .set(Fz::TXT, format!("updated{MARKER}"))
            .set_null(Fz::OPT_NUM)
            .exec(&tx)
            .await
            .map_err(|e| fail("update", e))?;
        prop_assert_eq!(updated.len() as u64, selected);
        tx.rollback().await.map_err(|e| fail("rollback", e))?;
        let tx = db.begin().await.map_err(|e| fail("begin", e))?;
        let deleted = Fz::query()
            .filter(filter(t))
            .delete(&tx)
            .await
            .map_err(|e| fail("delete", e))?;
        prop_assert_eq!(deleted.len() as u64, selected);
        tx.rollback().await.map_err(|e| fail("rollback", e))?;
    }
    Ok(())
}

#[test]
fn random_filter_trees_render_bound_valid_and_meaningful_sql() {
    let rt = runtime();
    let (tdb, log) = rt.block_on(async {
        let tdb = common::test_db("fuzz_filters").await;
        matrx_orm::ddl::create_tables(&*tdb, &[Fz::META])
            .await
            .unwrap();
        let rows: Vec<Fz> = (1..=ROWS).map(fz_row).collect();
        Fz::insert_many(&*tdb, &rows).await.unwrap();
        (tdb, SqlLog::default())
    });
    let _guard = log.install();
    let mut runner = runner("fuzz_filters", 600);
    let result = runner.run(&case(), |c| rt.block_on(check_case(&tdb, &c)));
    if let Err(e) = result {
        panic!("{e}");
    }
    let statements = log.take();
    reliability::assert_no_value_in_sql(&statements);
    for sql in &statements {
        reliability::assert_contiguous_placeholders(sql);
    }
    eprintln!("{} statements checked", statements.len());
    drop(_guard);
    drop(tdb);
}

// ----- relation edges --------------------------------------------------------------------------

/// One edge's customisation: a filter (a choice and a value), an ordering, a limit.
#[derive(Debug, Clone)]
struct Edge {
    filter: Option<(u8, i64, String)>,
    order: Option<bool>,
    limit: Option<u64>,
    /// 0: the call's default, 1: joined, 2: batched.
    plan: u8,
}

#[derive(Debug, Clone)]
struct RelCase {
    root_min_total: Option<i64>,
    root_limit: Option<u64>,
    customer: Option<(Edge, Option<Edge>)>,
    items: Option<(Edge, Option<ProductTree>)>,
    tags: Option<Edge>,
}

#[derive(Debug, Clone)]
struct ProductTree {
    edge: Edge,
    stock: Option<(Edge, Option<Edge>)>,
    warehouses: Option<Edge>,
}

fn edge() -> impl Strategy<Value = Edge> {
    (
        proptest::option::of((0u8..3, 0i64..120, text())),
        proptest::option::of(any::<bool>()),
        proptest::option::weighted(0.4, 0u64..4),
        0u8..3,
    )
        .prop_map(|(filter, order, limit, plan)| Edge {
            filter,
            order,
            limit,
            plan,
        })
}

fn rel_case() -> impl Strategy<Value = RelCase> {
    let product = (
        edge(),
        proptest::option::of((edge(), proptest::option::of(edge()))),
        proptest::option::of(edge()),
    )
        .prop_map(|(edge, stock, warehouses)| ProductTree {
            edge,
            stock,
            warehouses,
        });
    (
        proptest::option::of(0i64..400),
        proptest::option::of(0u64..40),
        proptest::option::of((edge(), proptest::option::of(edge()))),
        proptest::option::of((edge(), proptest::option::of(product))),
        proptest::option::of(edge()),
    )
        .prop_map(
            |(root_min_total, root_limit, customer, items, tags)| RelCase {
                root_min_total,
                root_limit,
                customer,
                items,
                tags,
            },
        )
}

/// The edge with its plan (or none: the plain path, for the reference load).
fn planned<R: Relation>(
    path: matrx_orm::Path<R>,
    plan: u8,
    overrides: bool,
) -> Prefetch<R::Source> {
    match (overrides, plan) {
        (true, 1) => path.joined().into_prefetch(),
        (true, 2) => path.batched().into_prefetch(),
        _ => path.into_prefetch(),
    }
}

/// Applies an edge's customisation with the given filter builders.
fn custom<R: Relation>(
    mut path: matrx_orm::Path<R>,
    e: &Edge,
    filters: impl Fn(u8, i64, &str) -> Filter<R::Target>,
    order: impl Fn(bool) -> Vec<matrx_orm::OrderBy<R::Target>>,
    to_many: bool,
) -> matrx_orm::Path<R> {
    if let Some((kind, n, s)) = &e.filter {
        path = path.filter(filters(*kind, *n, s));
    }
    if let Some(desc) = e.order {
        for o in order(desc) {
            path = path.order_by(o);
        }
    }
    if to_many {
        if let Some(n) = e.limit {
            path = path.limit_per_parent(n);
        }
    }
    path
}

fn edge_count(case: &RelCase) -> u64 {
    let mut n = 0;
    if let Some((_, r)) = &case.customer {
        n += 1 + r.is_some() as u64;
    }
    if let Some((_, p)) = &case.items {
        n += 1;
        if let Some(p) = p {
            n += 1 + p.warehouses.is_some() as u64;
            if let Some((_, w)) = &p.stock {
                n += 1 + w.is_some() as u64;
            }
        }
    }
    n + case.tags.is_some() as u64
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Prefetch,
    Joined,
    Balanced,
}

fn rel_query(case: &RelCase, mode: Mode, overrides: bool) -> Select<Order> {
    let mut q = Order::query().order_by(Order::ID.asc());
    if let Some(n) = case.root_min_total {
        q = q.filter(Order::TOTAL_CENTS.gte(n));
    }
    if let Some(n) = case.root_limit {
        q = q.limit(n);
    }
    let mut trees: Vec<Prefetch<Order>> = Vec::new();
    if let Some((e, referrer)) = &case.customer {
        let mut p = custom(
            Order::CUSTOMER.with(Prefetch::default()),
            e,
            |k, n, s| match k {
                0 => Customer::NAME.ne(s),
                1 => Customer::ID.lt(n),
                _ => Customer::NAME.like(format!("%{s}")),
            },
            |d| {
                vec![if d {
                    Customer::NAME.desc()
                } else {
                    Customer::NAME.asc()
                }]
            },
            false,
        );
        if let Some(r) = referrer {
            let rp = custom(
                Customer::REFERRER.with(Prefetch::default()),
                r,
                |_, n, _| Customer::ID.ne(n),
                |_| vec![],
                false,
            );
            p = p.with(planned(rp, r.plan, overrides));
        }
        trees.push(planned(p, e.plan, overrides));
    }
    if let Some((e, product)) = &case.items {
        let mut p = custom(
            Order::ITEMS.with(Prefetch::default()),
            e,
            |k, n, _| match k {
                0 => OrderItem::QUANTITY.gte(n as i32 % 5),
                1 => OrderItem::PRODUCT_ID.ne(n),
                _ => OrderItem::UNIT_PRICE_CENTS.between(0, n as i32),
            },
            |d| {
                vec![
                    if d {
                        OrderItem::UNIT_PRICE_CENTS.desc()
                    } else {
                        OrderItem::UNIT_PRICE_CENTS.asc()
                    },
                    OrderItem::ID.asc(),
                ]
            },
            true,
        );
        if let Some(pt) = product {
            let mut pp = custom(
                OrderItem::PRODUCT.with(Prefetch::default()),
                &pt.edge,
                |k, n, s| match k {
                    0 => Product::PRICE_CENTS.lt(n as i32),
                    1 => Product::NAME.ne(s),
                    _ => Product::SKU.is_in([s.to_owned(), format!("s{n}")]),
                },
                |_| vec![],
                false,
            );
            if let Some((se, we)) = &pt.stock {
                let mut sp = custom(
                    Product::STOCK.with(Prefetch::default()),
                    se,
                    |k, n, s| match k {
                        0 => Stock::QTY.gt(n as i32 % 10),
                        1 => Stock::REGION.ne(s),
                        _ => !Stock::CODE.eq(2),
                    },
                    |d| {
                        vec![
                            if d {
                                Stock::QTY.desc()
                            } else {
                                Stock::QTY.asc()
                            },
                            Stock::REGION.asc(),
                            Stock::CODE.asc(),
                        ]
                    },
                    true,
                );
                if let Some(we) = we {
                    let wp = custom(
                        Stock::WAREHOUSE.with(Prefetch::default()),
                        we,
                        |k, _, s| match k {
                            0 => Warehouse::NAME.ne(s),
                            _ => Warehouse::REGION.like(format!("{s}%")),
                        },
                        |_| vec![],
                        false,
                    );
                    sp = sp.with(planned(wp, we.plan, overrides));
                }
                pp = pp.with(planned(sp, se.plan, overrides));
            }
            if let Some(we) = &pt.warehouses {
                let wp = custom(
                    Product::WAREHOUSES.with(Prefetch::default()),
                    we,
                    |k, n, s| match k {
                        0 => Warehouse::NAME.ne(s),
                        1 => Warehouse::CODE.lte(n as i32 % 3),
                        _ => Warehouse::REGION.is_in([s.to_owned()]) | Warehouse::CODE.eq(1),
                    },
                    |d| {
                        vec![
                            if d {
                                Warehouse::NAME.desc()
                            } else {
                                Warehouse::NAME.asc()
                            },
                            Warehouse::REGION.asc(),
                            Warehouse::CODE.asc(),
                        ]
                    },
                    true,
                );
                pp = pp.with(planned(wp, we.plan, overrides));
            }
            p = p.with(planned(pp, pt.edge.plan, overrides));
        }
        trees.push(planned(p, e.plan, overrides));
    }
    if let Some(e) = &case.tags {
        let p = custom(
            Order::TAGS.with(Prefetch::default()),
            e,
            |k, n, s| match k {
                0 => Tag::NAME.ne(s),
                1 => Tag::ID.gt(n % 12),
                _ => Tag::NAME.ilike(format!("%{s}%")),
            },
            |d| {
                vec![
                    if d { Tag::NAME.desc() } else { Tag::NAME.asc() },
                    Tag::ID.asc(),
                ]
            },
            true,
        );
        trees.push(planned(p, e.plan, overrides));
    }
    for t in trees {
        q = match mode {
            Mode::Prefetch => q.prefetch(t),
            Mode::Joined => q.select_related(t),
            Mode::Balanced => q.balanced(t),
        };
    }
    q
}

async fn seed_shop(db: &Db) {
    let h = hostile();
    let tags: Vec<Tag> = h
        .iter()
        .take(12)
        .map(|name| Tag {
            id: 0,
            name: name.clone(),
        })
        .collect();
    Tag::insert_many(db, &tags).await.unwrap();
    let regions = ["eu".to_owned(), h[5].clone(), h[6].clone()];
    let warehouses: Vec<Warehouse> = regions
        .iter()
        .flat_map(|r| (1..=2).map(move |code| fixtures::warehouse(r, code, &format!("{r}/{code}"))))
        .collect();
    Warehouse::insert_many(db, &warehouses).await.unwrap();
    db.batch_execute(
        "INSERT INTO customers (name, email, created_at, referred_by) \
           SELECT 'c' || g, 'c' || g || '@x', now(), CASE WHEN g % 4 = 0 OR g = 1 THEN NULL ELSE g % 5 + 1 END \
           FROM generate_series(1, 30) g; \
         INSERT INTO products (sku, name, price_cents) SELECT 's' || g, 'p' || g, (g * 37) % 100 FROM generate_series(1, 12) g; \
         INSERT INTO orders (customer_id, status, placed_at, total_cents) \
           SELECT g % 30 + 1, 'paid', now(), (g * 13) % 500 FROM generate_series(1, 80) g; \
         INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
           SELECT o, (o + k) % 12 + 1, k, (o * k * 7) % 90 FROM generate_series(1, 80) o, generate_series(1, 4) k WHERE k <= o % 5; \
         INSERT INTO order_tags (order_id, tag_id) \
           SELECT o, t FROM generate_series(1, 80) o, generate_series(1, 12) t WHERE (o + t) % 4 = 0;",
    )
    .await
    .unwrap();
    let mut stock = Vec::new();
    for p in 1..=12i64 {
        for (i, w) in warehouses.iter().enumerate() {
            if (p + i as i64) % 3 != 0 {
                stock.push(fixtures::stock(
                    p,
                    &w.region,
                    w.code,
                    ((p * 3 + i as i64) % 10) as i32,
                ));
            }
        }
    }
    Stock::insert_many(db, &stock).await.unwrap();
    for mut p in Product::query().all(db).await.unwrap() {
        let keys: Vec<(String, i32)> = warehouses
            .iter()
            .enumerate()
            .filter(|(i, _)| (p.id + *i as i64) % 2 == 0)
            .map(|(_, w)| (w.region.clone(), w.code))
            .collect();
        p.m2m_set(db, Product::WAREHOUSES, keys).await.unwrap();
    }
}

/// Related rows attached by the reference loads (to show the trees load something).
static LOADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn check_rel_case(db: &Db, log: &SqlLog, case: &RelCase) -> Result<(), TestCaseError> {
    let edges = edge_count(case);
    log.take();
    let reference = rel_query(case, Mode::Prefetch, false)
        .all(db)
        .await
        .map_err(|e| TestCaseError::fail(format!("reference load: {e:?}")))?;
    let statements = log.take();
    prop_assert!(
        statements.len() as u64 <= 1 + edges,
        "{} statements",
        statements.len()
    );
    let related: usize = reference
        .iter()
        .map(|o| {
            o.items.get().map_or(0, <[_]>::len)
                + o.tags.get().map_or(0, <[_]>::len)
                + o.customer.get().is_some() as usize
        })
        .sum();
    LOADED.fetch_add(related, std::sync::atomic::Ordering::Relaxed);
    for mode in [Mode::Prefetch, Mode::Joined, Mode::Balanced] {
        let got = rel_query(case, mode, true)
            .all(db)
            .await
            .map_err(|e| TestCaseError::fail(format!("{mode:?}: {e:?}")))?;
        let statements = log.take();
        prop_assert!(
            statements.len() as u64 <= 1 + edges,
            "{mode:?}: {} statements for {edges} edges",
            statements.len()
        );
        for sql in &statements {
            prop_assert!(!sql.contains(MARKER), "a value in the text: {}", sql);
            let seen = placeholders(sql);
            prop_assert_eq!(
                seen.clone(),
                (1..=seen.len()).collect::<Vec<_>>(),
                "{}",
                sql
            );
        }
        prop_assert!(
            got == reference,
            "{mode:?} built another graph than prefetch"
        );
    }
    Ok(())
}

#[test]
fn random_relation_trees_bind_their_values_and_agree_across_strategies() {
    let rt = runtime();
    let tdb: TestDb = rt.block_on(async {
        let tdb = fixtures::shop_db("fuzz_relations").await;
        seed_shop(&tdb).await;
        tdb
    });
    let log = SqlLog::default();
    let _guard = log.install();
    let mut runner = runner("fuzz_relations", 300);
    let before = tdb.query_count();
    let result = runner.run(&rel_case(), |c| rt.block_on(check_rel_case(&tdb, &log, &c)));
    if let Err(e) = result {
        panic!("{e}");
    }
    let loaded = LOADED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{} statements for 300 trees x 4 loads; {loaded} items, tags and customers attached",
        tdb.query_count() - before
    );
    assert!(loaded > 1000, "the trees load related rows: {loaded}");
    drop(_guard);
    drop(tdb);
}

// ----- relation paths ----------------------------------------------------------------------------

/// The relations of each shop model and the model each leads to.
fn relations() -> HashMap<&'static str, Vec<(&'static str, &'static str)>> {
    HashMap::from([
        (
            "Customer",
            vec![("referrer", "Customer"), ("orders", "Order")],
        ),
        (
            "Order",
            vec![
                ("customer", "Customer"),
                ("items", "OrderItem"),
                ("tags", "Tag"),
            ],
        ),
        (
            "OrderItem",
            vec![("order", "Order"), ("product", "Product")],
        ),
        (
            "Product",
            vec![("stock", "Stock"), ("warehouses", "Warehouse")],
        ),
        (
            "Stock",
            vec![("warehouse", "Warehouse"), ("product", "Product")],
        ),
        ("Tag", vec![]),
        ("Warehouse", vec![]),
    ])
}

/// `Ok` when `path` walks relations from `Order`, else the first bad segment.
fn expected(path: &str) -> Result<(), String> {
    let rels = relations();
    let mut model = "Order";
    for seg in path.split("__") {
        match rels[model].iter().find(|(name, _)| *name == seg) {
            Some((_, next)) => model = next,
            None => return Err(seg.to_owned()),
        }
    }
    Ok(())
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "customer", "items", "tags", "product", "order", "stock", "warehouse",
            "warehouses", "referrer", "orders",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["", "_", "Items", "items ", "customer_id", "id", "__"])
            .prop_map(str::to_owned),
        1 => prop::sample::select(hostile()),
        1 => proptest::collection::vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect()),
    ]
}

#[test]
fn random_relation_paths_parse_exactly_when_every_segment_is_a_relation() {
    let mut runner = runner("fuzz_paths", 3000);
    let strategy = prop_oneof![
        4 => proptest::collection::vec(segment(), 1..5).prop_map(|s| s.join("__")),
        1 => any::<String>(),
    ];
    let result = runner.run(&strategy, |path| {
        let want = expected(&path);
        let got = Prefetch::<Order>::parse(&path);
        match (&want, &got) {
            (Ok(()), Ok(_)) => {}
            (Err(seg), Err(matrx_orm::Error::InvalidInput(msg))) => {
                prop_assert!(
                    seg.is_empty() || msg.contains(&format!("`{seg}`")),
                    "the message names the bad segment {seg:?}: {msg}"
                );
            }
            _ => prop_assert!(false, "{path:?}: expected {want:?}, got {got:?}"),
        }
        // The query builders agree, and parse before any statement.
        let a = Order::query().prefetch_path(&path).is_ok();
        let b = Order::query().select_related_path(&path).is_ok();
        let c = Order::query().balanced_path(&path).is_ok();
        prop_assert_eq!((a, b, c), (want.is_ok(), want.is_ok(), want.is_ok()));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
