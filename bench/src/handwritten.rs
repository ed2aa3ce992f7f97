//! The hand-written `tokio-postgres` baseline: the practical lower bound the
//! ORM strategies are compared with.
//!
//! One query per relation edge, keys passed as arrays (`= ANY($1)`, composite
//! keys through `unnest($1::text[], $2::int4[])`), prepared statements, every
//! column of every object decoded into plain structs (each distinct object
//! once), relations navigable by index into the graph's vectors.  Child
//! lists are sorted in memory (the rows mostly arrive sorted already).
//!
//! Queries per run: W1/W2 5 (orders; customers, items and tags pipelined on
//! the connection; then products), W3 4 (products; stock then its
//! warehouses by composite key, pipelined with product_warehouses joined to
//! warehouses), W4 3 per task (orders; customers + tags), W5 5 per task
//! (orders; customers + items; referrers + products).  A query whose key list
//! is empty is not sent.  W4/W5 tasks each own one of `tasks` connections.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::{try_join, try_join3, try_join_all};
use tokio_postgres::types::ToSql;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, Statement};

use crate::checksum::Checksums;
use crate::db;
use crate::error::{BenchError, Result};
use crate::strategy::{BenchContext, BoxFuture, LoadedGraph, Loader, QueryCounter, StrategyDef};
use crate::workload::WorkloadParams;

/// The registry entry of the baseline (all five workloads).
pub const STRATEGY: StrategyDef = StrategyDef {
    name: crate::strategy::BASELINE,
    w1: Some(setup_w1),
    w2: Some(setup_w2),
    w3: Some(setup_w3),
    w4: Some(setup_w4),
    w5: Some(setup_w5),
};

// ---------------------------------------------------------------- model --

/// A `customers` row.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Primary key.
    pub id: i64,
    /// Name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Id of the referring customer.
    pub referred_by: Option<i64>,
}

/// A `products` row.
#[derive(Debug, Clone)]
pub struct Product {
    /// Primary key.
    pub id: i64,
    /// Stock-keeping unit.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Price in cents.
    pub price_cents: i32,
}

/// An `orders` row.
#[derive(Debug, Clone)]
pub struct Order {
    /// Primary key.
    pub id: i64,
    /// FK to `customers`.
    pub customer_id: i64,
    /// Status.
    pub status: String,
    /// When placed.
    pub placed_at: DateTime<Utc>,
    /// Order total in cents.
    pub total_cents: i64,
}

/// An `order_items` row.
#[derive(Debug, Clone)]
pub struct OrderItem {
    /// Primary key.
    pub id: i64,
    /// FK to `orders`.
    pub order_id: i64,
    /// FK to `products`.
    pub product_id: i64,
    /// Quantity.
    pub quantity: i32,
    /// Unit price in cents.
    pub unit_price_cents: i32,
}

/// A `tags` row.
#[derive(Debug, Clone)]
pub struct Tag {
    /// Primary key.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// A `warehouses` row (primary key `(region, code)`).
#[derive(Debug, Clone)]
pub struct Warehouse {
    /// Region.
    pub region: String,
    /// Code within the region.
    pub code: i32,
    /// Name.
    pub name: String,
}

/// A `stock` row.
#[derive(Debug, Clone)]
pub struct Stock {
    /// FK to `products`.
    pub product_id: i64,
    /// Warehouse region.
    pub region: String,
    /// Warehouse code.
    pub code: i32,
    /// Quantity.
    pub qty: i32,
}

fn customer(row: &Row) -> Result<Customer> {
    Ok(Customer {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        email: row.try_get(2)?,
        created_at: row.try_get(3)?,
        referred_by: row.try_get(4)?,
    })
}

fn product(row: &Row) -> Result<Product> {
    Ok(Product {
        id: row.try_get(0)?,
        sku: row.try_get(1)?,
        name: row.try_get(2)?,
        price_cents: row.try_get(3)?,
    })
}

fn order(row: &Row) -> Result<Order> {
    Ok(Order {
        id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        status: row.try_get(2)?,
        placed_at: row.try_get(3)?,
        total_cents: row.try_get(4)?,
    })
}

fn order_item(row: &Row) -> Result<OrderItem> {
    Ok(OrderItem {
        id: row.try_get(0)?,
        order_id: row.try_get(1)?,
        product_id: row.try_get(2)?,
        quantity: row.try_get(3)?,
        unit_price_cents: row.try_get(4)?,
    })
}

fn stock(row: &Row) -> Result<Stock> {
    Ok(Stock {
        product_id: row.try_get(0)?,
        region: row.try_get(1)?,
        code: row.try_get(2)?,
        qty: row.try_get(3)?,
    })
}

fn char_len(s: &str) -> i64 {
    s.chars().count() as i64
}

// ------------------------------------------------------------- id maps --

/// A multiplicative hasher for `i64` keys (ids are small and dense, so the
/// default SipHash would only cost time).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map from an id to a position in a vector.
pub type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// Objects of one type with an id -> position index, deduplicated.
struct Interned<T> {
    items: Vec<T>,
    index: IdMap<usize>,
}

impl<T> Interned<T> {
    fn with_capacity(n: usize) -> Self {
        Interned {
            items: Vec::with_capacity(n),
            index: IdMap::with_capacity_and_hasher(n, Default::default()),
        }
    }

    /// Decodes `row` into a new object unless `id` is already present;
    /// returns its position.
    fn intern(&mut self, id: i64, row: &Row, decode: impl Fn(&Row) -> Result<T>) -> Result<usize> {
        if let Some(&i) = self.index.get(&id) {
            return Ok(i);
        }
        let i = self.items.len();
        self.items.push(decode(row)?);
        self.index.insert(id, i);
        Ok(i)
    }

    fn position(&self, id: i64, what: &str) -> Result<usize> {
        self.index
            .get(&id)
            .copied()
            .ok_or_else(|| BenchError::other(format!("{what} {id} was not loaded")))
    }
}

/// Distinct values in first-seen order.
fn distinct(ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut seen = IdMap::<()>::default();
    ids.into_iter()
        .filter(|&id| seen.insert(id, ()).is_none())
        .collect()
}

// ---------------------------------------------------------- connection --

/// One statement of the baseline: prepared on its connection, or, through a
/// transaction pooler (`--pgbouncer`), its text and parameter types sent as the
/// unnamed statement (`query_typed`) — the pooler-safe way to write it by hand.
enum Stmt {
    Prepared(Statement),
    Unnamed(String, Vec<Type>),
}

/// Makes the baseline's statements: prepared on `client`, or unnamed with the types
/// a direct connection reports (what a hand-written client would write down).
struct Prep<'a> {
    client: &'a Client,
    types_from: Option<&'a Client>,
}

impl Prep<'_> {
    async fn make(&self, sql: String) -> Result<Stmt> {
        Ok(match self.types_from {
            None => Stmt::Prepared(self.client.prepare(&sql).await?),
            Some(direct) => {
                let types = direct.prepare(&sql).await?.params().to_vec();
                Stmt::Unnamed(sql, types)
            }
        })
    }
}

/// The statements of the baseline, per connection.
struct Statements {
    orders_first: Stmt,
    orders_all: Stmt,
    orders_by_ids: Stmt,
    customers_by_ids: Stmt,
    items_by_orders: Stmt,
    products_by_ids: Stmt,
    tags_by_orders: Stmt,
    products_all: Stmt,
    stock_by_products: Stmt,
    warehouses_by_keys: Stmt,
    warehouses_by_products: Stmt,
}

/// One connection with its statements and the shared query counter.
struct Db {
    client: Client,
    st: Statements,
    counter: QueryCounter,
}

impl Db {
    async fn connect(ctx: &BenchContext, counter: QueryCounter) -> Result<Db> {
        if !db::is_plain_identifier(&ctx.schema) {
            return Err(BenchError::other(format!(
                "bad schema name {:?}",
                ctx.schema
            )));
        }
        let (client, direct) = match &ctx.pooler_url {
            Some(pooler) => (
                db::connect(pooler).await?,
                Some(db::connect(&ctx.database_url).await?),
            ),
            None => (db::connect(&ctx.database_url).await?, None),
        };
        let prep = Prep {
            client: &client,
            types_from: direct.as_ref(),
        };
        let s = &ctx.schema;
        let order_cols = "id, customer_id, status, placed_at, total_cents";
        let customer_cols = "id, name, email, created_at, referred_by";
        let product_cols = "id, sku, name, price_cents";
        let st = Statements {
            orders_first: prep
                .make(format!(
                    "SELECT {order_cols} FROM {s}.orders ORDER BY id LIMIT $1"
                ))
                .await?,
            orders_all: prep
                .make(format!("SELECT {order_cols} FROM {s}.orders ORDER BY id"))
                .await?,
            orders_by_ids: prep
                .make(format!(
                    "SELECT {order_cols} FROM {s}.orders WHERE id = ANY($1) ORDER BY id"
                ))
                .await?,
            customers_by_ids: prep
                .make(format!(
                    "SELECT {customer_cols} FROM {s}.customers WHERE id = ANY($1)"
                ))
                .await?,
            items_by_orders: prep
                .make(format!(
                    "SELECT id, order_id, product_id, quantity, unit_price_cents \
                     FROM {s}.order_items WHERE order_id = ANY($1)"
                ))
                .await?,
            products_by_ids: prep
                .make(format!(
                    "SELECT {product_cols} FROM {s}.products WHERE id = ANY($1)"
                ))
                .await?,
            tags_by_orders: prep
                .make(format!(
                    "SELECT ot.order_id, t.id, t.name FROM {s}.order_tags ot \
                     JOIN {s}.tags t ON t.id = ot.tag_id WHERE ot.order_id = ANY($1)"
                ))
                .await?,
            products_all: prep
                .make(format!(
                    "SELECT {product_cols} FROM {s}.products ORDER BY id"
                ))
                .await?,
            stock_by_products: prep
                .make(format!(
                    "SELECT product_id, region, code, qty FROM {s}.stock \
                     WHERE product_id = ANY($1)"
                ))
                .await?,
            warehouses_by_keys: prep
                .make(format!(
                    "SELECT w.region, w.code, w.name FROM {s}.warehouses w \
                     JOIN unnest($1::text[], $2::int4[]) AS k(region, code) \
                     ON w.region = k.region AND w.code = k.code"
                ))
                .await?,
            warehouses_by_products: prep
                .make(format!(
                    "SELECT pw.product_id, w.region, w.code, w.name \
                     FROM {s}.product_warehouses pw \
                     JOIN {s}.warehouses w ON w.region = pw.region AND w.code = pw.code \
                     WHERE pw.product_id = ANY($1)"
                ))
                .await?,
        };
        Ok(Db {
            client,
            st,
            counter,
        })
    }

    /// Runs one statement (the single place queries are counted).
    async fn query(&self, st: &Stmt, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.counter.incr();
        Ok(match st {
            Stmt::Prepared(st) => self.client.query(st, params).await?,
            Stmt::Unnamed(sql, types) => {
                let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                    params.iter().copied().zip(types.iter().cloned()).collect();
                self.client.query_typed(sql, &typed).await?
            }
        })
    }

    /// Runs `st` with the id array `ids`, or returns no rows without a query
    /// when `ids` is empty.
    async fn query_ids(&self, st: &Stmt, ids: &[i64]) -> Result<Vec<Row>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query(st, &[&ids]).await
    }
}

// ------------------------------------------------------- W1 / W2 graph --

/// W1/W2: orders with customer, items (+ product) and tags.
#[derive(Debug)]
pub struct OrderGraph {
    /// The orders by id.
    pub orders: Vec<OrderNode>,
    /// The distinct customers.
    pub customers: Vec<Customer>,
    /// The distinct products.
    pub products: Vec<Product>,
    /// The distinct tags.
    pub tags: Vec<Tag>,
}

/// An order in an [`OrderGraph`].
#[derive(Debug)]
pub struct OrderNode {
    /// The order.
    pub order: Order,
    /// Position of its customer in [`OrderGraph::customers`].
    pub customer: usize,
    /// Its items by item id.
    pub items: Vec<ItemNode>,
    /// Positions of its tags in [`OrderGraph::tags`], by tag id.
    pub tags: Vec<usize>,
}

/// An item with the position of its product (in the graph's `products`).
#[derive(Debug)]
pub struct ItemNode {
    /// The item.
    pub item: OrderItem,
    /// Position of its product in the graph's product vector.
    pub product: usize,
}

/// Which orders W1/W2 load.
#[derive(Debug, Clone, Copy)]
enum OrderSet {
    First(i64),
    All,
}

async fn load_order_graph(db: &Db, set: OrderSet) -> Result<OrderGraph> {
    let rows = match set {
        OrderSet::First(n) => db.query(&db.st.orders_first, &[&n]).await?,
        OrderSet::All => db.query(&db.st.orders_all, &[]).await?,
    };
    let mut orders = Vec::with_capacity(rows.len());
    let mut order_pos = IdMap::with_capacity_and_hasher(rows.len(), Default::default());
    for (i, row) in rows.iter().enumerate() {
        let o = order(row)?;
        order_pos.insert(o.id, i);
        orders.push(o);
    }
    let order_ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    let customer_ids = distinct(orders.iter().map(|o| o.customer_id));

    // Three independent edges, pipelined on the one connection.
    let (customer_rows, item_rows, tag_rows) = try_join3(
        db.query_ids(&db.st.customers_by_ids, &customer_ids),
        db.query_ids(&db.st.items_by_orders, &order_ids),
        db.query_ids(&db.st.tags_by_orders, &order_ids),
    )
    .await?;

    let mut items: Vec<OrderItem> = item_rows.iter().map(order_item).collect::<Result<_>>()?;
    drop(item_rows);
    let product_ids = distinct(items.iter().map(|i| i.product_id));
    let product_rows = db.query_ids(&db.st.products_by_ids, &product_ids).await?;

    let mut customers = Interned::with_capacity(customer_rows.len());
    for row in &customer_rows {
        customers.intern(row.try_get(0)?, row, customer)?;
    }
    let mut products = Interned::with_capacity(product_rows.len());
    for row in &product_rows {
        products.intern(row.try_get(0)?, row, product)?;
    }

    let mut nodes: Vec<OrderNode> = Vec::with_capacity(orders.len());
    for o in orders {
        nodes.push(OrderNode {
            customer: customers.position(o.customer_id, "customer")?,
            order: o,
            items: Vec::new(),
            tags: Vec::new(),
        });
    }
    items.sort_by_key(|i| i.id);
    for item in items {
        let node = order_pos
            .get(&item.order_id)
            .copied()
            .ok_or_else(|| BenchError::other(format!("order {} not loaded", item.order_id)))?;
        let product = products.position(item.product_id, "product")?;
        nodes[node].items.push(ItemNode { item, product });
    }

    let mut tags = Interned::with_capacity(64);
    let mut links: Vec<(usize, i64, usize)> = Vec::with_capacity(tag_rows.len());
    for row in &tag_rows {
        let order_id: i64 = row.try_get(0)?;
        let tag_id: i64 = row.try_get(1)?;
        let tag = tags.intern(tag_id, row, |r| {
            Ok(Tag {
                id: tag_id,
                name: r.try_get(2)?,
            })
        })?;
        let node = order_pos
            .get(&order_id)
            .copied()
            .ok_or_else(|| BenchError::other(format!("order {order_id} not loaded")))?;
        links.push((node, tag_id, tag));
    }
    links.sort_unstable_by_key(|&(node, tag_id, _)| (node, tag_id));
    for (node, _, tag) in links {
        nodes[node].tags.push(tag);
    }

    Ok(OrderGraph {
        orders: nodes,
        customers: customers.items,
        products: products.items,
        tags: tags.items,
    })
}

impl LoadedGraph for OrderGraph {
    fn checksums(&self) -> Checksums {
        let (mut order_id_sum, mut customer_id_sum, mut email_len) = (0, 0, 0);
        let (mut items, mut value, mut item_pos, mut price) = (0, 0, 0, 0);
        let (mut links, mut tag_id_sum, mut tag_pos) = (0, 0, 0);
        for o in &self.orders {
            order_id_sum += o.order.id;
            let c = &self.customers[o.customer];
            customer_id_sum += c.id;
            email_len += char_len(&c.email);
            for (pos, i) in (1..).zip(&o.items) {
                items += 1;
                value += i64::from(i.item.quantity) * i64::from(i.item.unit_price_cents);
                item_pos += pos * i.item.id;
                price += i64::from(self.products[i.product].price_cents);
            }
            for (pos, &t) in (1..).zip(&o.tags) {
                let id = self.tags[t].id;
                links += 1;
                tag_id_sum += id;
                tag_pos += pos * id;
            }
        }
        Checksums::from_pairs([
            ("orders", self.orders.len() as i64),
            ("order_id_sum", order_id_sum),
            ("customer_id_sum", customer_id_sum),
            ("customer_email_len_sum", email_len),
            ("items", items),
            ("item_value_sum", value),
            ("item_pos_sum", item_pos),
            ("product_price_sum", price),
            ("tag_links", links),
            ("tag_id_sum", tag_id_sum),
            ("tag_pos_sum", tag_pos),
        ])
    }
}

// ------------------------------------------------------------ W3 graph --

/// W3: all products with stock (+ warehouse) and warehouses via M2M.
#[derive(Debug)]
pub struct ProductGraph {
    /// The products by id.
    pub products: Vec<ProductNode>,
    /// The distinct warehouses.
    pub warehouses: Vec<Warehouse>,
}

/// A product in a [`ProductGraph`].
#[derive(Debug)]
pub struct ProductNode {
    /// The product.
    pub product: Product,
    /// Its stock rows by (region, code).
    pub stock: Vec<StockNode>,
    /// Positions of its warehouses (via product_warehouses) in
    /// [`ProductGraph::warehouses`], by (region, code).
    pub warehouses: Vec<usize>,
}

/// A stock row with the position of its warehouse.
#[derive(Debug)]
pub struct StockNode {
    /// The stock row.
    pub stock: Stock,
    /// Position of its warehouse in [`ProductGraph::warehouses`].
    pub warehouse: usize,
}

/// Warehouses with a `(region, code)` index.
#[derive(Default)]
struct WarehouseSet {
    items: Vec<Warehouse>,
    index: HashMap<(String, i32), usize>,
}

impl WarehouseSet {
    /// Interns the warehouse whose region, code and name are the columns
    /// `first`, `first + 1`, `first + 2` of `row`.
    fn intern(&mut self, row: &Row, first: usize) -> Result<usize> {
        let region: String = row.try_get(first)?;
        let code: i32 = row.try_get(first + 1)?;
        if let Some(&i) = self.index.get(&(region.clone(), code)) {
            return Ok(i);
        }
        let i = self.items.len();
        self.items.push(Warehouse {
            region: region.clone(),
            code,
            name: row.try_get(first + 2)?,
        });
        self.index.insert((region, code), i);
        Ok(i)
    }

    fn position(&self, region: &str, code: i32) -> Result<usize> {
        self.index
            .get(&(region.to_string(), code))
            .copied()
            .ok_or_else(|| BenchError::other(format!("warehouse ({region}, {code}) not loaded")))
    }
}

async fn load_product_graph(db: &Db) -> Result<ProductGraph> {
    let rows = db.query(&db.st.products_all, &[]).await?;
    let mut nodes = Vec::with_capacity(rows.len());
    let mut product_pos = IdMap::with_capacity_and_hasher(rows.len(), Default::default());
    for (i, row) in rows.iter().enumerate() {
        let p = product(row)?;
        product_pos.insert(p.id, i);
        nodes.push(ProductNode {
            product: p,
            stock: Vec::new(),
            warehouses: Vec::new(),
        });
    }
    let ids: Vec<i64> = nodes.iter().map(|n| n.product.id).collect();

    let stock_branch = async {
        let rows = db.query_ids(&db.st.stock_by_products, &ids).await?;
        let stock: Vec<Stock> = rows.iter().map(stock).collect::<Result<_>>()?;
        let mut keys: Vec<(&str, i32)> =
            stock.iter().map(|s| (s.region.as_str(), s.code)).collect();
        keys.sort_unstable();
        keys.dedup();
        let regions: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let codes: Vec<i32> = keys.iter().map(|k| k.1).collect();
        let wh_rows = if keys.is_empty() {
            Vec::new()
        } else {
            db.query(&db.st.warehouses_by_keys, &[&regions, &codes])
                .await?
        };
        Ok::<_, BenchError>((stock, wh_rows))
    };
    let ((stock_rows, wh_rows), pw_rows) = try_join(
        stock_branch,
        db.query_ids(&db.st.warehouses_by_products, &ids),
    )
    .await?;

    let mut warehouses = WarehouseSet::default();
    for row in &wh_rows {
        warehouses.intern(row, 0)?;
    }
    let product_node = |id: i64| {
        product_pos
            .get(&id)
            .copied()
            .ok_or_else(|| BenchError::other(format!("product {id} not loaded")))
    };
    for s in stock_rows {
        let warehouse = warehouses.position(&s.region, s.code)?;
        nodes[product_node(s.product_id)?].stock.push(StockNode {
            stock: s,
            warehouse,
        });
    }
    for row in &pw_rows {
        let w = warehouses.intern(row, 1)?;
        nodes[product_node(row.try_get(0)?)?].warehouses.push(w);
    }
    let wh = &warehouses.items;
    for n in &mut nodes {
        n.stock
            .sort_by(|a, b| (&a.stock.region, a.stock.code).cmp(&(&b.stock.region, b.stock.code)));
        n.warehouses
            .sort_by(|&a, &b| (&wh[a].region, wh[a].code).cmp(&(&wh[b].region, wh[b].code)));
    }
    Ok(ProductGraph {
        products: nodes,
        warehouses: warehouses.items,
    })
}

impl LoadedGraph for ProductGraph {
    fn checksums(&self) -> Checksums {
        let mut id_sum = 0;
        let (mut rows, mut qty, mut pos_qty, mut st_name) = (0, 0, 0, 0);
        let (mut links, mut pw_name, mut pw_pos_code) = (0, 0, 0);
        for p in &self.products {
            id_sum += p.product.id;
            for (pos, s) in (1..).zip(&p.stock) {
                rows += 1;
                qty += i64::from(s.stock.qty);
                pos_qty += pos * i64::from(s.stock.qty);
                st_name += char_len(&self.warehouses[s.warehouse].name);
            }
            for (pos, &w) in (1..).zip(&p.warehouses) {
                let w = &self.warehouses[w];
                links += 1;
                pw_name += char_len(&w.name);
                pw_pos_code += pos * i64::from(w.code);
            }
        }
        Checksums::from_pairs([
            ("products", self.products.len() as i64),
            ("product_id_sum", id_sum),
            ("stock_rows", rows),
            ("stock_qty_sum", qty),
            ("stock_pos_qty_sum", pos_qty),
            ("stock_wh_name_len_sum", st_name),
            ("pw_links", links),
            ("pw_wh_name_len_sum", pw_name),
            ("pw_pos_code_sum", pw_pos_code),
        ])
    }
}

// ------------------------------------------------------------ W4 graph --

/// W4: per task, its orders with customer and tags.
#[derive(Debug)]
pub struct RequestsGraph {
    /// One graph per task, by task number.
    pub tasks: Vec<TaskOrders>,
}

/// The orders of one W4 task.
#[derive(Debug)]
pub struct TaskOrders {
    /// The task's orders by id.
    pub orders: Vec<TaskOrderNode>,
    /// The distinct customers of the task.
    pub customers: Vec<Customer>,
    /// The distinct tags of the task.
    pub tags: Vec<Tag>,
}

/// An order of a W4 task.
#[derive(Debug)]
pub struct TaskOrderNode {
    /// The order.
    pub order: Order,
    /// Position of its customer in [`TaskOrders::customers`].
    pub customer: usize,
    /// Positions of its tags in [`TaskOrders::tags`], by tag id.
    pub tags: Vec<usize>,
}

/// Loads the orders `ids` of one W4 task: the orders, then their customers
/// and tags concurrently (3 queries).
async fn load_w4_task(db: &Db, ids: &[i64]) -> Result<TaskOrders> {
    let rows = db.query_ids(&db.st.orders_by_ids, ids).await?;
    let orders: Vec<Order> = rows.iter().map(order).collect::<Result<_>>()?;
    let order_ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    let customer_ids = distinct(orders.iter().map(|o| o.customer_id));
    let (customer_rows, tag_rows) = try_join(
        db.query_ids(&db.st.customers_by_ids, &customer_ids),
        db.query_ids(&db.st.tags_by_orders, &order_ids),
    )
    .await?;

    let mut customers = Interned::with_capacity(customer_rows.len());
    for row in &customer_rows {
        customers.intern(row.try_get(0)?, row, customer)?;
    }
    let order_pos: IdMap<usize> = (0..).zip(&order_ids).map(|(i, &id)| (id, i)).collect();
    let mut nodes = Vec::with_capacity(orders.len());
    for o in orders {
        nodes.push(TaskOrderNode {
            customer: customers.position(o.customer_id, "customer")?,
            order: o,
            tags: Vec::new(),
        });
    }
    let mut tags = Interned::with_capacity(tag_rows.len());
    let mut links = Vec::with_capacity(tag_rows.len());
    for row in &tag_rows {
        let order_id: i64 = row.try_get(0)?;
        let tag_id: i64 = row.try_get(1)?;
        let tag = tags.intern(tag_id, row, |r| {
            Ok(Tag {
                id: tag_id,
                name: r.try_get(2)?,
            })
        })?;
        let node = order_pos
            .get(&order_id)
            .copied()
            .ok_or_else(|| BenchError::other(format!("order {order_id} not loaded")))?;
        links.push((node, tag_id, tag));
    }
    links.sort_unstable_by_key(|&(node, tag_id, _)| (node, tag_id));
    for (node, _, tag) in links {
        nodes[node].tags.push(tag);
    }
    Ok(TaskOrders {
        orders: nodes,
        customers: customers.items,
        tags: tags.items,
    })
}

impl LoadedGraph for RequestsGraph {
    fn checksums(&self) -> Checksums {
        let (mut orders, mut order_id_sum, mut customer_id_sum, mut email_len) = (0, 0, 0, 0);
        let (mut links, mut tag_id_sum, mut tag_pos) = (0, 0, 0);
        for t in &self.tasks {
            for o in &t.orders {
                orders += 1;
                order_id_sum += o.order.id;
                let c = &t.customers[o.customer];
                customer_id_sum += c.id;
                email_len += char_len(&c.email);
                for (pos, &tag) in (1..).zip(&o.tags) {
                    let id = t.tags[tag].id;
                    links += 1;
                    tag_id_sum += id;
                    tag_pos += pos * id;
                }
            }
        }
        Checksums::from_pairs([
            ("orders", orders),
            ("order_id_sum", order_id_sum),
            ("customer_id_sum", customer_id_sum),
            ("customer_email_len_sum", email_len),
            ("tag_links", links),
            ("tag_id_sum", tag_id_sum),
            ("tag_pos_sum", tag_pos),
        ])
    }
}

// ------------------------------------------------------------ W5 graph --

/// W5: per task, orders with customer (+ referrer) and items (+ product).
#[derive(Debug)]
pub struct WavesGraph {
    /// One graph per task, by task number.
    pub tasks: Vec<TaskWaves>,
}

/// The objects of one W5 task.
#[derive(Debug)]
pub struct TaskWaves {
    /// The task's orders by id.
    pub orders: Vec<WaveOrderNode>,
    /// The distinct customers of the task, referrers included.
    pub customers: Vec<CustomerNode>,
    /// The distinct products of the task.
    pub products: Vec<Product>,
}

/// An order of a W5 task.
#[derive(Debug)]
pub struct WaveOrderNode {
    /// The order.
    pub order: Order,
    /// Position of its customer in [`TaskWaves::customers`].
    pub customer: usize,
    /// Its items by item id (product positions in [`TaskWaves::products`]).
    pub items: Vec<ItemNode>,
}

/// A customer with the position of its referrer (if any) in
/// [`TaskWaves::customers`].
#[derive(Debug)]
pub struct CustomerNode {
    /// The customer.
    pub customer: Customer,
    /// Position of the `referred_by` customer when it was loaded (always for
    /// the orders' customers; a referrer's own referrer is not loaded).
    pub referrer: Option<usize>,
}

/// Loads the orders `ids` of one W5 task in three waves: orders; customers +
/// items; referrers (those not loaded yet) + products (5 queries).
async fn load_w5_task(db: &Db, ids: &[i64]) -> Result<TaskWaves> {
    let rows = db.query_ids(&db.st.orders_by_ids, ids).await?;
    let orders: Vec<Order> = rows.iter().map(order).collect::<Result<_>>()?;
    let order_ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    let customer_ids = distinct(orders.iter().map(|o| o.customer_id));

    let (customer_rows, item_rows) = try_join(
        db.query_ids(&db.st.customers_by_ids, &customer_ids),
        db.query_ids(&db.st.items_by_orders, &order_ids),
    )
    .await?;
    let mut customers = Interned::with_capacity(customer_rows.len() * 2);
    for row in &customer_rows {
        customers.intern(row.try_get(0)?, row, customer)?;
    }
    let mut items: Vec<OrderItem> = item_rows.iter().map(order_item).collect::<Result<_>>()?;
    let referrer_ids = distinct(
        customers
            .items
            .iter()
            .filter_map(|c: &Customer| c.referred_by)
            .filter(|id| !customers.index.contains_key(id)),
    );
    let product_ids = distinct(items.iter().map(|i| i.product_id));

    let (referrer_rows, product_rows) = try_join(
        db.query_ids(&db.st.customers_by_ids, &referrer_ids),
        db.query_ids(&db.st.products_by_ids, &product_ids),
    )
    .await?;
    for row in &referrer_rows {
        customers.intern(row.try_get(0)?, row, customer)?;
    }
    let mut products = Interned::with_capacity(product_rows.len());
    for row in &product_rows {
        products.intern(row.try_get(0)?, row, product)?;
    }

    let order_pos: IdMap<usize> = (0..).zip(&order_ids).map(|(i, &id)| (id, i)).collect();
    let mut nodes = Vec::with_capacity(orders.len());
    for o in orders {
        nodes.push(WaveOrderNode {
            customer: customers.position(o.customer_id, "customer")?,
            order: o,
            items: Vec::new(),
        });
    }
    items.sort_by_key(|i| i.id);
    for item in items {
        let node = order_pos
            .get(&item.order_id)
            .copied()
            .ok_or_else(|| BenchError::other(format!("order {} not loaded", item.order_id)))?;
        let product = products.position(item.product_id, "product")?;
        nodes[node].items.push(ItemNode { item, product });
    }
    // Referrers of the orders' customers are all loaded; those of the
    // referrers themselves are not part of the workload.
    let referrers: Vec<Option<usize>> = customers
        .items
        .iter()
        .map(|c| {
            c.referred_by
                .and_then(|id| customers.index.get(&id).copied())
        })
        .collect();
    let customers = customers
        .items
        .into_iter()
        .zip(referrers)
        .map(|(customer, referrer)| CustomerNode { customer, referrer })
        .collect();
    Ok(TaskWaves {
        orders: nodes,
        customers,
        products: products.items,
    })
}

impl LoadedGraph for WavesGraph {
    fn checksums(&self) -> Checksums {
        let (mut orders, mut order_id_sum, mut customer_id_sum) = (0, 0, 0);
        let (mut referrers, mut referrer_id_sum, mut referrer_email_len) = (0, 0, 0);
        let (mut items, mut value, mut price) = (0, 0, 0);
        for t in &self.tasks {
            for o in &t.orders {
                orders += 1;
                order_id_sum += o.order.id;
                let c = &t.customers[o.customer];
                customer_id_sum += c.customer.id;
                if let Some(r) = c.referrer {
                    let r = &t.customers[r].customer;
                    referrers += 1;
                    referrer_id_sum += r.id;
                    referrer_email_len += char_len(&r.email);
                }
                for i in &o.items {
                    items += 1;
                    value += i64::from(i.item.quantity) * i64::from(i.item.unit_price_cents);
                    price += i64::from(t.products[i.product].price_cents);
                }
            }
        }
        Checksums::from_pairs([
            ("orders", orders),
            ("order_id_sum", order_id_sum),
            ("customer_id_sum", customer_id_sum),
            ("referrers", referrers),
            ("referrer_id_sum", referrer_id_sum),
            ("referrer_email_len_sum", referrer_email_len),
            ("items", items),
            ("item_value_sum", value),
            ("product_price_sum", price),
        ])
    }
}

// -------------------------------------------------------------- loaders --

/// W1/W2/W3: one connection.
struct SingleLoader {
    db: Db,
    kind: SingleKind,
}

#[derive(Clone, Copy)]
enum SingleKind {
    Orders(OrderSet),
    Products,
}

impl Loader for SingleLoader {
    fn load(&mut self) -> BoxFuture<'_, Result<Box<dyn LoadedGraph>>> {
        Box::pin(async move {
            let graph: Box<dyn LoadedGraph> = match self.kind {
                SingleKind::Orders(set) => Box::new(load_order_graph(&self.db, set).await?),
                SingleKind::Products => Box::new(load_product_graph(&self.db).await?),
            };
            Ok(graph)
        })
    }

    fn client_query_count(&self) -> Option<u64> {
        Some(self.db.counter.get())
    }
}

async fn single(ctx: &BenchContext, kind: SingleKind) -> Result<Box<dyn Loader>> {
    let db = Db::connect(ctx, QueryCounter::new()).await?;
    Ok(Box::new(SingleLoader { db, kind }))
}

fn setup_w1(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(single(
        ctx,
        SingleKind::Orders(OrderSet::First(ctx.params.w1_orders)),
    ))
}

fn setup_w2(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(single(ctx, SingleKind::Orders(OrderSet::All)))
}

fn setup_w3(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(single(ctx, SingleKind::Products))
}

/// W4/W5: one connection per task, tasks spawned on the tokio runtime.
struct TasksLoader {
    dbs: Vec<Arc<Db>>,
    params: WorkloadParams,
    counter: QueryCounter,
    nested: bool,
}

impl TasksLoader {
    async fn connect(ctx: &BenchContext, nested: bool) -> Result<TasksLoader> {
        let counter = QueryCounter::new();
        let dbs = try_join_all((0..ctx.params.tasks).map(|_| Db::connect(ctx, counter.clone())))
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        Ok(TasksLoader {
            dbs,
            params: ctx.params,
            counter,
            nested,
        })
    }

    /// Spawns one tokio task per request and collects their results in task
    /// order.
    async fn run<T, F, Fut>(&self, task: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(Arc<Db>, Vec<i64>) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let handles: Vec<_> = self
            .dbs
            .iter()
            .enumerate()
            .map(|(k, db)| tokio::spawn(task(Arc::clone(db), self.params.task_order_ids(k))))
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let result = h
                .await
                .map_err(|e| BenchError::other(format!("task failed: {e}")))?;
            out.push(result?);
        }
        Ok(out)
    }
}

impl Loader for TasksLoader {
    fn load(&mut self) -> BoxFuture<'_, Result<Box<dyn LoadedGraph>>> {
        Box::pin(async move {
            let graph: Box<dyn LoadedGraph> = if self.nested {
                let tasks = self
                    .run(|db, ids| async move { load_w5_task(&db, &ids).await })
                    .await?;
                Box::new(WavesGraph { tasks })
            } else {
                let tasks = self
                    .run(|db, ids| async move { load_w4_task(&db, &ids).await })
                    .await?;
                Box::new(RequestsGraph { tasks })
            };
            Ok(graph)
        })
    }

    fn client_query_count(&self) -> Option<u64> {
        Some(self.counter.get())
    }
}

fn setup_w4(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(
        async move { Ok(Box::new(TasksLoader::connect(ctx, false).await?) as Box<dyn Loader>) },
    )
}

fn setup_w5(ctx: &BenchContext) -> BoxFuture<'_, Result<Box<dyn Loader>>> {
    Box::pin(async move { Ok(Box::new(TasksLoader::connect(ctx, true).await?) as Box<dyn Loader>) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keeps_first_seen_order() {
        assert_eq!(distinct([3, 1, 3, 2, 1]), vec![3, 1, 2]);
    }

    #[test]
    fn id_map_works() {
        let mut m = IdMap::default();
        for i in 0..1000i64 {
            m.insert(i, i * 2);
        }
        assert_eq!(m.get(&500), Some(&1000));
        assert_eq!(m.len(), 1000);
    }
}
