//! The project's own generator of the WORKLOADS.md dataset.
//!
//! [`Dataset::generate`] reproduces `seed.sql` row for row in Rust (the same
//! md5-based hash [`h`], the same formulas, PostgreSQL integer division), and
//! [`ensure_dataset`] loads it into a schema of any name with binary `COPY`,
//! verifies it with the checksum SQL and records a marker table so the next
//! run can skip the build.

use std::fmt::Write as _;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use md5::{Digest, Md5};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Transaction};

use crate::checksum::{self, WorkloadChecksums};
use crate::db::is_plain_identifier;
use crate::error::{BenchError, Result};
use crate::workload::WorkloadParams;

/// The schema `schema.sql` and `seed.sql` use; the generator's default.
pub const DEFAULT_SCHEMA: &str = "shop";

/// Bump when the generator or the DDL changes: a schema whose marker holds
/// another version is rebuilt.
pub const DATASET_VERSION: &str = "matrx-orm-bench dataset v1";

/// `h(key)`: the first 7 hex digits of `md5(key)` as an integer (the first 28
/// bits of the digest, so `0 ..= 2^28-1`), exactly like seed.sql's
/// `('x' || substr(md5(key), 1, 7))::bit(28)::integer`.
pub fn h(key: &str) -> i64 {
    let d = Md5::digest(key.as_bytes());
    i64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) >> 4)
}

/// Computes [`h`] of formatted keys without allocating a string per call.
#[derive(Default)]
struct Hasher {
    buf: String,
}

impl Hasher {
    fn h(&mut self, key: std::fmt::Arguments<'_>) -> i64 {
        self.buf.clear();
        // Writing into a String cannot fail.
        let _ = self.buf.write_fmt(key);
        h(&self.buf)
    }
}

/// Row counts of a dataset.  The formulas of seed.sql use these counts where
/// seed.sql has the literal numbers (2000 customers, 1000 products, 20000
/// orders, 50 tags); the 20 warehouses are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSize {
    /// Number of customers (ids `1..=customers`).
    pub customers: i64,
    /// Number of products (ids `1..=products`).
    pub products: i64,
    /// Number of orders (ids `1..=orders`).
    pub orders: i64,
    /// Number of tags (ids `1..=tags`); at least 49 so that an order's up to
    /// 4 tags (stride up to 12) stay distinct, at most 99 (`lpad(t, 2)`).
    pub tags: i64,
}

impl DatasetSize {
    /// The WORKLOADS.md dataset.
    pub const FULL: DatasetSize = DatasetSize {
        customers: 2000,
        products: 1000,
        orders: 20000,
        tags: 50,
    };

    /// 1/20 of the customers, products and orders, for smoke tests.
    pub const TINY: DatasetSize = DatasetSize {
        customers: 100,
        products: 50,
        orders: 1000,
        tags: 50,
    };

    /// 10x the customers, products and orders (200,000 orders), for the streaming
    /// benchmark; tags stay at 50 (at most 99).
    pub const X10: DatasetSize = DatasetSize {
        customers: 20000,
        products: 10000,
        orders: 200000,
        tags: 50,
    };

    /// The version string stored in the marker table for this size.
    pub fn version(&self) -> String {
        format!(
            "{DATASET_VERSION} customers={} products={} orders={} tags={}",
            self.customers, self.products, self.orders, self.tags
        )
    }
}

/// A row of `customers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    /// Primary key.
    pub id: i64,
    /// `'Customer ' || id`.
    pub name: String,
    /// `'customer' || id || '@example.com'`.
    pub email: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// An earlier customer, for about half of them.
    pub referred_by: Option<i64>,
}

/// A row of `products`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    /// Primary key.
    pub id: i64,
    /// `'SKU-' || lpad(id, 6, '0')`.
    pub sku: String,
    /// `'Product ' || id`.
    pub name: String,
    /// Price in cents.
    pub price_cents: i32,
}

/// A row of `tags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    /// Primary key.
    pub id: i64,
    /// `'tag-' || lpad(id, 2, '0')`.
    pub name: String,
}

/// A row of `warehouses` (composite primary key `(region, code)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseRow {
    /// Region code (`af`, `ap`, `eu`, `na`, `sa`).
    pub region: String,
    /// Warehouse number within the region (1..=4).
    pub code: i32,
    /// Display name.
    pub name: String,
}

/// A row of `orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// Primary key.
    pub id: i64,
    /// FK to `customers`.
    pub customer_id: i64,
    /// One of pending, paid, shipped, delivered, cancelled.
    pub status: String,
    /// When the order was placed.
    pub placed_at: DateTime<Utc>,
    /// Σ quantity × unit_price_cents over the order's items.
    pub total_cents: i64,
}

/// A row of `order_items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItemRow {
    /// Primary key (dense, ascending with (order, position)).
    pub id: i64,
    /// FK to `orders`.
    pub order_id: i64,
    /// FK to `products`.
    pub product_id: i64,
    /// 1..=5.
    pub quantity: i32,
    /// The product's price minus a 0..19 % discount (integer division).
    pub unit_price_cents: i32,
}

/// A row of `order_tags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderTagRow {
    /// FK to `orders`.
    pub order_id: i64,
    /// FK to `tags`.
    pub tag_id: i64,
}

/// A row of `stock` (composite FK `(region, code)` to `warehouses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRow {
    /// FK to `products`.
    pub product_id: i64,
    /// Warehouse region.
    pub region: String,
    /// Warehouse code.
    pub code: i32,
    /// Quantity in stock (0..499).
    pub qty: i32,
}

/// A row of `product_warehouses` (M2M to the composite-PK `warehouses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductWarehouseRow {
    /// FK to `products`.
    pub product_id: i64,
    /// Warehouse region.
    pub region: String,
    /// Warehouse code.
    pub code: i32,
}

/// The regions in warehouse-index order: warehouse `w` (0..19) is
/// `(REGIONS[w / 4], w % 4 + 1)`.
pub const REGIONS: [&str; 5] = ["af", "ap", "eu", "na", "sa"];

/// The warehouse names, by warehouse index (see [`REGIONS`]).
pub const WAREHOUSE_NAMES: [&str; 20] = [
    "Lagos DC",
    "Nairobi DC",
    "Cairo DC",
    "Johannesburg DC",
    "Singapore DC",
    "Tokyo DC",
    "Sydney DC",
    "Mumbai DC",
    "Berlin DC",
    "Amsterdam DC",
    "Madrid DC",
    "Stockholm DC",
    "Chicago DC",
    "Toronto DC",
    "Dallas DC",
    "Seattle DC",
    "Sao Paulo DC",
    "Bogota DC",
    "Lima DC",
    "Santiago DC",
];

/// The order statuses, indexed by `h('os' || o) % 5`.
pub const STATUSES: [&str; 5] = ["pending", "paid", "shipped", "delivered", "cancelled"];

/// Unix time of 2020-01-01 00:00:00+00 (customers' `created_at` base).
const EPOCH_2020: i64 = 1_577_836_800;
/// Unix time of 2023-01-01 00:00:00+00 (orders' `placed_at` base).
const EPOCH_2023: i64 = 1_672_531_200;

fn utc_from_unix(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
}

/// (region, code) of warehouse index `w` (0..19).
fn warehouse_key(w: i64) -> (&'static str, i32) {
    (REGIONS[(w / 4) as usize], (1 + w % 4) as i32)
}

/// All rows of the dataset, in the order seed.sql inserts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The sizes it was generated with.
    pub size: DatasetSize,
    /// `customers` rows by id.
    pub customers: Vec<CustomerRow>,
    /// `products` rows by id.
    pub products: Vec<ProductRow>,
    /// `tags` rows by id.
    pub tags: Vec<TagRow>,
    /// The 20 `warehouses` rows by (region, code).
    pub warehouses: Vec<WarehouseRow>,
    /// `orders` rows by id.
    pub orders: Vec<OrderRow>,
    /// `order_items` rows by id.
    pub order_items: Vec<OrderItemRow>,
    /// `order_tags` rows by (order_id, tag_id).
    pub order_tags: Vec<OrderTagRow>,
    /// `stock` rows by (product_id, region, code).
    pub stock: Vec<StockRow>,
    /// `product_warehouses` rows by (product_id, region, code).
    pub product_warehouses: Vec<ProductWarehouseRow>,
}

impl Dataset {
    /// Generates the dataset of seed.sql with the given sizes
    /// ([`DatasetSize::FULL`] is exactly seed.sql).
    ///
    /// Timestamps are computed in UTC: `n * interval '1 day'` is `n * 86400`
    /// seconds, which is what seed.sql yields in a UTC session.
    pub fn generate(size: DatasetSize) -> Dataset {
        let mut hs = Hasher::default();

        let customers = (1..=size.customers)
            .map(|c| {
                let days = hs.h(format_args!("cc{c}")) % 1096;
                let secs = hs.h(format_args!("cs{c}")) % 86400;
                let referred_by = (c > 1 && hs.h(format_args!("rb{c}")) % 2 == 0)
                    .then(|| 1 + hs.h(format_args!("rr{c}")) % (c - 1));
                CustomerRow {
                    id: c,
                    name: format!("Customer {c}"),
                    email: format!("customer{c}@example.com"),
                    created_at: utc_from_unix(EPOCH_2020 + days * 86400 + secs),
                    referred_by,
                }
            })
            .collect();

        let products: Vec<ProductRow> = (1..=size.products)
            .map(|p| ProductRow {
                id: p,
                sku: format!("SKU-{p:06}"),
                name: format!("Product {p}"),
                price_cents: (199 + hs.h(format_args!("pp{p}")) % 99800) as i32,
            })
            .collect();

        let tags = (1..=size.tags)
            .map(|t| TagRow {
                id: t,
                name: format!("tag-{t:02}"),
            })
            .collect();

        let warehouses = (0..20)
            .map(|w| {
                let (region, code) = warehouse_key(w);
                WarehouseRow {
                    region: region.to_string(),
                    code,
                    name: WAREHOUSE_NAMES[w as usize].to_string(),
                }
            })
            .collect();

        // Items first: order o has h('in'||o) % 11 of them.
        let mut order_items = Vec::new();
        let mut totals = vec![0i64; size.orders as usize];
        for o in 1..=size.orders {
            for g in 1..=hs.h(format_args!("in{o}")) % 11 {
                let product_id = 1 + hs.h(format_args!("ip{o}:{g}")) % size.products;
                let quantity = (1 + hs.h(format_args!("iq{o}:{g}")) % 5) as i32;
                let discount = hs.h(format_args!("id{o}:{g}")) % 20;
                let price = i64::from(products[(product_id - 1) as usize].price_cents);
                // Non-negative operands: Rust's `/` truncates like PostgreSQL's.
                let unit_price_cents = (price * (100 - discount) / 100) as i32;
                totals[(o - 1) as usize] += i64::from(quantity) * i64::from(unit_price_cents);
                order_items.push(OrderItemRow {
                    id: order_items.len() as i64 + 1,
                    order_id: o,
                    product_id,
                    quantity,
                    unit_price_cents,
                });
            }
        }

        let orders = (1..=size.orders)
            .map(|o| OrderRow {
                id: o,
                customer_id: 1 + hs.h(format_args!("oc{o}")) % size.customers,
                status: STATUSES[(hs.h(format_args!("os{o}")) % 5) as usize].to_string(),
                placed_at: utc_from_unix(
                    EPOCH_2023 + o * 26 * 60 + hs.h(format_args!("ot{o}")) % 1560,
                ),
                total_cents: totals[(o - 1) as usize],
            })
            .collect();

        let mut order_tags = Vec::new();
        for o in 1..=size.orders {
            let n = hs.h(format_args!("tn{o}")) % 5;
            let start = hs.h(format_args!("ts{o}")) % size.tags;
            let stride = 1 + hs.h(format_args!("tp{o}")) % 12;
            let mut ids: Vec<i64> = (0..n)
                .map(|k| 1 + (start + k * stride) % size.tags)
                .collect();
            ids.sort_unstable();
            order_tags.extend(ids.into_iter().map(|tag_id| OrderTagRow {
                order_id: o,
                tag_id,
            }));
        }

        let mut stock = Vec::new();
        let mut product_warehouses = Vec::new();
        for p in 1..=size.products {
            // Sorting warehouse indexes sorts by (region, code).
            let mut ws = warehouse_indexes(&mut hs, p, ["sn", "ss", "sp"], 7);
            ws.sort_unstable();
            for w in ws {
                let (region, code) = warehouse_key(w);
                stock.push(StockRow {
                    product_id: p,
                    region: region.to_string(),
                    code,
                    qty: (hs.h(format_args!("sq{p}:{w}")) % 500) as i32,
                });
            }
            let mut ws = warehouse_indexes(&mut hs, p, ["wn", "ws", "wp"], 6);
            ws.sort_unstable();
            for w in ws {
                let (region, code) = warehouse_key(w);
                product_warehouses.push(ProductWarehouseRow {
                    product_id: p,
                    region: region.to_string(),
                    code,
                });
            }
        }

        Dataset {
            size,
            customers,
            products,
            tags,
            warehouses,
            orders,
            order_items,
            order_tags,
            stock,
            product_warehouses,
        }
    }
}

/// The warehouse indexes of product `p` for stock (`sn`/`ss`/`sp`, up to 6)
/// or product_warehouses (`wn`/`ws`/`wp`, up to 5):
/// `(h(start||p) % 20 + k * (1 + h(stride||p) % 3)) % 20` for
/// `k in 0 .. h(count||p) % modulus`.
fn warehouse_indexes(
    hs: &mut Hasher,
    p: i64,
    [count, start, stride]: [&str; 3],
    modulus: i64,
) -> Vec<i64> {
    let n = hs.h(format_args!("{count}{p}")) % modulus;
    let start = hs.h(format_args!("{start}{p}")) % 20;
    let stride = 1 + hs.h(format_args!("{stride}{p}")) % 3;
    (0..n).map(|k| (start + k * stride) % 20).collect()
}

/// The DDL of schema.sql (everything after `CREATE SCHEMA`), verbatim, in
/// schema `shop`; [`schema_ddl`] rewrites it to another schema.
pub const SCHEMA_DDL: &str = r#"
CREATE TABLE shop.customers (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    email       text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    referred_by bigint      NULL REFERENCES shop.customers (id)
);
CREATE INDEX customers_referred_by_idx ON shop.customers (referred_by);

CREATE TABLE shop.products (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    sku         text    NOT NULL UNIQUE,
    name        text    NOT NULL,
    price_cents integer NOT NULL
);

CREATE TABLE shop.orders (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id bigint      NOT NULL REFERENCES shop.customers (id),
    status      text        NOT NULL,
    placed_at   timestamptz NOT NULL,
    total_cents bigint      NOT NULL
);
CREATE INDEX orders_customer_id_idx ON shop.orders (customer_id);

CREATE TABLE shop.order_items (
    id               bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    order_id         bigint  NOT NULL REFERENCES shop.orders (id),
    product_id       bigint  NOT NULL REFERENCES shop.products (id),
    quantity         integer NOT NULL,
    unit_price_cents integer NOT NULL
);
CREATE INDEX order_items_order_id_idx   ON shop.order_items (order_id);
CREATE INDEX order_items_product_id_idx ON shop.order_items (product_id);

CREATE TABLE shop.tags (
    id   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE shop.order_tags (
    order_id bigint NOT NULL REFERENCES shop.orders (id),
    tag_id   bigint NOT NULL REFERENCES shop.tags (id),
    PRIMARY KEY (order_id, tag_id)
);
CREATE INDEX order_tags_tag_id_idx ON shop.order_tags (tag_id);

-- composite primary key
CREATE TABLE shop.warehouses (
    region text    NOT NULL,
    code   integer NOT NULL,
    name   text    NOT NULL,
    PRIMARY KEY (region, code)
);

-- composite foreign key (region, code) -> warehouses
CREATE TABLE shop.stock (
    product_id bigint  NOT NULL REFERENCES shop.products (id),
    region     text    NOT NULL,
    code       integer NOT NULL,
    qty        integer NOT NULL,
    PRIMARY KEY (product_id, region, code),
    FOREIGN KEY (region, code) REFERENCES shop.warehouses (region, code)
);
CREATE INDEX stock_region_code_idx ON shop.stock (region, code);

-- many-to-many whose target has a composite primary key
CREATE TABLE shop.product_warehouses (
    product_id bigint  NOT NULL REFERENCES shop.products (id),
    region     text    NOT NULL,
    code       integer NOT NULL,
    PRIMARY KEY (product_id, region, code),
    FOREIGN KEY (region, code) REFERENCES shop.warehouses (region, code)
);
CREATE INDEX product_warehouses_region_code_idx ON shop.product_warehouses (region, code);
"#;

/// The tables of the dataset, in dependency (load) order.
pub const TABLES: [&str; 9] = [
    "customers",
    "products",
    "tags",
    "warehouses",
    "orders",
    "order_items",
    "order_tags",
    "stock",
    "product_warehouses",
];

/// [`SCHEMA_DDL`] with every `shop.` rewritten to `schema.` (index names
/// are per schema, so they need no change).
pub fn schema_ddl(schema: &str) -> String {
    SCHEMA_DDL.replace("shop.", &format!("{schema}."))
}

/// What [`ensure_dataset`] did.
#[derive(Debug, Clone)]
pub struct EnsureOutcome {
    /// Whether the schema was (re)built in this call.
    pub built: bool,
    /// The checksums the database computes on the schema (the truth for the
    /// tiny scale, equal to the published values for the full one).
    pub db_checksums: WorkloadChecksums,
}

/// Makes sure `schema` holds the dataset of `size`, building it if needed,
/// and returns the checksums the database computes on it.
///
/// The build is skipped when `<schema>.dataset_info` holds the current
/// version string with `checksum_ok` and the live checksums still pass.
/// `expected`, when given, is what the checksum SQL must return (the
/// published full-scale values); a mismatch after a fresh build is an error.
/// Concurrent callers are serialised by an advisory lock.
pub async fn ensure_dataset(
    client: &mut Client,
    schema: &str,
    size: DatasetSize,
    params: &WorkloadParams,
    expected: Option<&WorkloadChecksums>,
) -> Result<EnsureOutcome> {
    if !is_plain_identifier(schema) {
        return Err(BenchError::other(format!("bad schema name {schema:?}")));
    }
    let lock_key = format!("matrx-orm-bench:{schema}");
    client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key])
        .await?;
    let result = ensure_locked(client, schema, size, params, expected).await;
    // Release even after a failure (the session ends soon anyway).
    let unlock = client
        .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock_key])
        .await;
    let outcome = result?;
    unlock?;
    Ok(outcome)
}

async fn ensure_locked(
    client: &mut Client,
    schema: &str,
    size: DatasetSize,
    params: &WorkloadParams,
    expected: Option<&WorkloadChecksums>,
) -> Result<EnsureOutcome> {
    let version = size.version();
    if marker_ok(client, schema, &version).await? {
        let db_checksums = checksum::checksums_from_db(client, schema, params).await?;
        match expected.map(|e| checksum_problems(e, &db_checksums)) {
            None => {
                return Ok(EnsureOutcome {
                    built: false,
                    db_checksums,
                })
            }
            Some(problems) if problems.is_empty() => {
                return Ok(EnsureOutcome {
                    built: false,
                    db_checksums,
                })
            }
            Some(problems) => eprintln!(
                "matrx-orm-bench: schema {schema} no longer matches the expected checksums \
                 ({problems}); rebuilding"
            ),
        }
    }

    let started = Instant::now();
    eprintln!("matrx-orm-bench: building dataset in schema {schema} ...");
    let data = Dataset::generate(size);
    load(client, schema, &data).await?;
    let db_checksums = checksum::checksums_from_db(client, schema, params).await?;
    if let Some(e) = expected {
        let problems = checksum_problems(e, &db_checksums);
        if !problems.is_empty() {
            return Err(BenchError::other(format!(
                "the generated dataset in schema {schema} does not match WORKLOADS.md: {problems}"
            )));
        }
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.dataset_info (version text NOT NULL, checksum_ok bool NOT NULL)"
        ))
        .await?;
    client
        .execute(
            &format!("INSERT INTO {schema}.dataset_info (version, checksum_ok) VALUES ($1, true)"),
            &[&version],
        )
        .await?;
    eprintln!(
        "matrx-orm-bench: built schema {schema} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(EnsureOutcome {
        built: true,
        db_checksums,
    })
}

/// Mismatches between expected and actual checksums of every expected
/// workload, as one line (empty when all match).
fn checksum_problems(expected: &WorkloadChecksums, actual: &WorkloadChecksums) -> String {
    let empty = checksum::Checksums::new();
    expected
        .iter()
        .flat_map(|(w, e)| {
            checksum::compare(e, actual.get(w).unwrap_or(&empty))
                .into_iter()
                .map(move |m| format!("{w} {m}"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `<schema>.dataset_info` exists and says `version` was loaded and
/// checked.
async fn marker_ok(client: &Client, schema: &str, version: &str) -> Result<bool> {
    let table = format!("{schema}.dataset_info");
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?;
    if !row.try_get::<_, bool>(0)? {
        return Ok(false);
    }
    let rows = client
        .query(&format!("SELECT version, checksum_ok FROM {table}"), &[])
        .await?;
    for row in rows {
        let v: Option<String> = row.try_get(0)?;
        let ok: Option<bool> = row.try_get(1)?;
        if v.as_deref() == Some(version) && ok == Some(true) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops and recreates `schema`, loads `data` with binary COPY in one
/// transaction, advances the identity sequences, then `VACUUM ANALYZE`s.
pub async fn load(client: &mut Client, schema: &str, data: &Dataset) -> Result<()> {
    if !is_plain_identifier(schema) {
        return Err(BenchError::other(format!("bad schema name {schema:?}")));
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL client_min_messages = warning;\n\
         DROP SCHEMA IF EXISTS {schema} CASCADE;\n\
         CREATE SCHEMA {schema};\n{}",
        schema_ddl(schema)
    ))
    .await?;

    use Type as T;
    let c = Copier { tx: &tx, schema };
    c.copy(
        "customers (id, name, email, created_at, referred_by)",
        [T::INT8, T::TEXT, T::TEXT, T::TIMESTAMPTZ, T::INT8],
        &data.customers,
        |r| [&r.id, &r.name, &r.email, &r.created_at, &r.referred_by],
    )
    .await?;
    c.copy(
        "products (id, sku, name, price_cents)",
        [T::INT8, T::TEXT, T::TEXT, T::INT4],
        &data.products,
        |r| [&r.id, &r.sku, &r.name, &r.price_cents],
    )
    .await?;
    c.copy("tags (id, name)", [T::INT8, T::TEXT], &data.tags, |r| {
        [&r.id, &r.name]
    })
    .await?;
    c.copy(
        "warehouses (region, code, name)",
        [T::TEXT, T::INT4, T::TEXT],
        &data.warehouses,
        |r| [&r.region, &r.code, &r.name],
    )
    .await?;
    c.copy(
        "orders (id, customer_id, status, placed_at, total_cents)",
        [T::INT8, T::INT8, T::TEXT, T::TIMESTAMPTZ, T::INT8],
        &data.orders,
        |r| {
            [
                &r.id,
                &r.customer_id,
                &r.status,
                &r.placed_at,
                &r.total_cents,
            ]
        },
    )
    .await?;
    c.copy(
        "order_items (id, order_id, product_id, quantity, unit_price_cents)",
        [T::INT8, T::INT8, T::INT8, T::INT4, T::INT4],
        &data.order_items,
        |r| {
            [
                &r.id,
                &r.order_id,
                &r.product_id,
                &r.quantity,
                &r.unit_price_cents,
            ]
        },
    )
    .await?;
    c.copy(
        "order_tags (order_id, tag_id)",
        [T::INT8, T::INT8],
        &data.order_tags,
        |r| [&r.order_id, &r.tag_id],
    )
    .await?;
    c.copy(
        "stock (product_id, region, code, qty)",
        [T::INT8, T::TEXT, T::INT4, T::INT4],
        &data.stock,
        |r| [&r.product_id, &r.region, &r.code, &r.qty],
    )
    .await?;
    c.copy(
        "product_warehouses (product_id, region, code)",
        [T::INT8, T::TEXT, T::INT4],
        &data.product_warehouses,
        |r| [&r.product_id, &r.region, &r.code],
    )
    .await?;

    // seed.sql's setval calls: the next generated id follows the seeded ones.
    let max_item_id = data.order_items.last().map_or(0, |i| i.id);
    for (table, last) in [
        ("customers", data.size.customers),
        ("products", data.size.products),
        ("tags", data.size.tags),
        ("orders", data.size.orders),
        ("order_items", max_item_id),
    ] {
        let qualified = format!("{schema}.{table}");
        // setval(seq, 1, false) when the table is empty: nextval gives 1.
        let (value, is_called) = if last > 0 { (last, true) } else { (1, false) };
        tx.execute(
            "SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3)",
            &[&qualified, &value, &is_called],
        )
        .await?;
    }
    tx.commit().await?;

    let tables: Vec<String> = TABLES.iter().map(|t| format!("{schema}.{t}")).collect();
    client
        .batch_execute(&format!("VACUUM ANALYZE {}", tables.join(", ")))
        .await?;
    Ok(())
}

/// Runs binary `COPY ... FROM STDIN` into tables of one schema.
struct Copier<'a, 't> {
    tx: &'a Transaction<'t>,
    schema: &'a str,
}

impl Copier<'_, '_> {
    /// Copies `rows` into `table_and_columns` (e.g. `"tags (id, name)"`);
    /// `fields` gives a row's values in column order, typed as `types`.
    async fn copy<R, const N: usize>(
        &self,
        table_and_columns: &str,
        types: [Type; N],
        rows: &[R],
        fields: impl Fn(&R) -> [&(dyn ToSql + Sync); N],
    ) -> Result<()> {
        let sql = format!(
            "COPY {}.{table_and_columns} FROM STDIN (FORMAT binary)",
            self.schema
        );
        let sink = self.tx.copy_in(&sql).await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        futures_util::pin_mut!(writer);
        for row in rows {
            writer.as_mut().write(&fields(row)).await?;
        }
        writer.finish().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_postgres_md5() {
        // md5('cc1') = d68005ccf362b82d084551b6291792a3 -> 0xd68005c
        assert_eq!(h("cc1"), 0xd68005c);
        assert_eq!(h("cc1"), 224_919_644);
        // md5('ip20000:10') = ac6de83fc045685abce6b0ec1f77e50b -> 0xac6de83
        assert_eq!(h("ip20000:10"), 180_805_251);
        // md5('') = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(h(""), 0xd41d8cd);
        let mut hs = Hasher::default();
        assert_eq!(hs.h(format_args!("ip{}:{}", 20000, 10)), 180_805_251);
    }

    #[test]
    fn full_sizes_match_workloads_md() {
        let d = Dataset::generate(DatasetSize::FULL);
        assert_eq!(d.customers.len(), 2000);
        assert_eq!(
            d.customers
                .iter()
                .filter(|c| c.referred_by.is_some())
                .count(),
            1006
        );
        assert_eq!(d.products.len(), 1000);
        assert_eq!(d.orders.len(), 20000);
        assert_eq!(d.order_items.len(), 100_261);
        let with_items: std::collections::HashSet<i64> =
            d.order_items.iter().map(|i| i.order_id).collect();
        assert_eq!(20000 - with_items.len(), 1834);
        assert_eq!(d.tags.len(), 50);
        assert_eq!(d.order_tags.len(), 40_440);
        assert_eq!(d.warehouses.len(), 20);
        assert_eq!(d.stock.len(), 3042);
        assert_eq!(d.product_warehouses.len(), 2471);
        // W1 "orders page" checksums that depend on the data alone.
        let w1_items: Vec<&OrderItemRow> = d
            .order_items
            .iter()
            .filter(|i| i.order_id <= 1000)
            .collect();
        assert_eq!(w1_items.len(), 4955);
        let value: i64 = w1_items
            .iter()
            .map(|i| i64::from(i.quantity) * i64::from(i.unit_price_cents))
            .sum();
        assert_eq!(value, 659_126_575);
        let per_customer_max = {
            let mut n = vec![0; 2001];
            for o in &d.orders {
                n[o.customer_id as usize] += 1;
            }
            n.into_iter().max().unwrap_or(0)
        };
        assert!(per_customer_max <= 25);
    }

    #[test]
    fn formats_like_seed_sql() {
        let d = Dataset::generate(DatasetSize::TINY);
        assert_eq!(d.products[6].sku, "SKU-000007");
        assert_eq!(d.tags[4].name, "tag-05");
        assert_eq!(d.customers[2].email, "customer3@example.com");
        assert_eq!(d.warehouses[7].region, "ap");
        assert_eq!(d.warehouses[7].code, 4);
        assert_eq!(d.warehouses[7].name, "Mumbai DC");
        assert_eq!(
            d.orders[0].total_cents,
            d.order_items
                .iter()
                .filter(|i| i.order_id == 1)
                .map(|i| i64::from(i.quantity) * i64::from(i.unit_price_cents))
                .sum::<i64>()
        );
    }

    /// Removes `--` comments and collapses whitespace.
    fn normalize_sql(sql: &str) -> String {
        sql.lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn embedded_ddl_matches_schema_sql() {
        let path = format!(
            "{}/../../shared/bench/schema.sql",
            env!("CARGO_MANIFEST_DIR")
        );
        let Ok(schema_sql) = std::fs::read_to_string(path) else {
            eprintln!("../shared/bench/schema.sql not found; skipped");
            return;
        };
        let ddl = normalize_sql(SCHEMA_DDL);
        let full = normalize_sql(&schema_sql);
        assert!(
            full.ends_with(&ddl),
            "SCHEMA_DDL is not the tail of schema.sql"
        );
        assert!(!schema_ddl("matrx_bench").contains("shop."));
    }
}
