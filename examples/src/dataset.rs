//! A small, deterministic shop dataset, generated in memory and written through the
//! ORM itself (batched inserts and many-to-many `m2m_add`).
//!
//! The same seed always gives the same rows, so the examples can print stable
//! samples and check what they load against what was written.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::try_join_all;
use matrx_orm::prelude::*;

use crate::shop::{Customer, Order, OrderItem, Product, Stock, Tag, Warehouse};

/// How big the generated shop is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Customers; about half are referred by an earlier customer.
    pub customers: usize,
    /// Products.
    pub products: usize,
    /// Orders; each has 1 to 9 items (5 on average).
    pub orders: usize,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            customers: 200,
            products: 100,
            orders: 2_000,
        }
    }
}

/// A tiny deterministic random number generator (SplitMix64): no extra crate, and
/// the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        let span = (high - low + 1).max(1) as u64;
        low + (self.next_u64() % span) as i64
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A random element of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

const FIRST: [&str; 20] = [
    "ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances", "john",
    "radia", "edsger", "hedy", "tim", "karen", "niklaus", "sophie", "guido", "anita", "bjarne",
];
const LAST: [&str; 10] = [
    "lovelace", "turing", "hopper", "torvalds", "liskov", "thompson", "hamilton", "ritchie",
    "allen", "backus",
];
const ADJECTIVES: [&str; 10] = [
    "Blue", "Red", "Tiny", "Large", "Quiet", "Smart", "Retro", "Steel", "Wooden", "Golden",
];
const NOUNS: [&str; 10] = [
    "Kettle", "Mug", "Lamp", "Chair", "Clock", "Kite", "Notebook", "Teapot", "Backpack", "Radio",
];
const TAGS: [&str; 20] = [
    "gift",
    "express",
    "fragile",
    "bulk",
    "b2b",
    "promo",
    "returning",
    "first-order",
    "vip",
    "weekend",
    "eco",
    "priority",
    "international",
    "pickup",
    "subscription",
    "holiday",
    "wholesale",
    "sample",
    "replacement",
    "preorder",
];
const WAREHOUSES: [(&str, i32, &str); 8] = [
    ("eu", 1, "Dublin"),
    ("eu", 2, "Frankfurt"),
    ("us", 1, "Ohio"),
    ("us", 2, "Oregon"),
    ("us", 3, "Virginia"),
    ("ap", 1, "Singapore"),
    ("ap", 2, "Tokyo"),
    ("af", 1, "Lagos"),
];

/// The generated rows, kept in memory so the examples can check what they load.
#[derive(Debug, Clone)]
pub struct Shop {
    /// Customers, ids `1..=n`.
    pub customers: Vec<Customer>,
    /// Products, ids `1..=n`.
    pub products: Vec<Product>,
    /// Orders, ids `1..=n`.
    pub orders: Vec<Order>,
    /// Order items, ids `1..=n`, grouped by order.
    pub items: Vec<OrderItem>,
    /// Tags, ids `1..=20`.
    pub tags: Vec<Tag>,
    /// The 8 warehouses, keyed by `(region, code)`.
    pub warehouses: Vec<Warehouse>,
    /// Stock rows: each product in 2 to 4 warehouses.
    pub stock: Vec<Stock>,
    /// Tag ids of each order (same index as `orders`).
    pub order_tags: Vec<Vec<i64>>,
    /// Warehouses each product is listed in (same index as `products`).
    pub product_warehouses: Vec<Vec<(String, i32)>>,
}

impl Shop {
    /// Generates the dataset from `seed`. Fails on a size with no customers,
    /// products or orders.
    pub fn generate(size: Size, seed: u64) -> Result<Shop, String> {
        if size.customers == 0 || size.products == 0 || size.orders == 0 {
            return Err(format!(
                "the dataset needs at least one customer, product and order: {size:?}"
            ));
        }
        let mut rng = Rng::new(seed);
        let start = DateTime::<Utc>::from_timestamp(1_704_067_200, 0) // 2024-01-01
            .ok_or("the dataset's start date is out of range")?;
        let minute = |n: i64| start + Duration::minutes(n);

        let customers: Vec<Customer> = (1..=size.customers as i64)
            .map(|id| {
                let first = rng.pick(&FIRST);
                let last = rng.pick(&LAST);
                let referred_by = (id > 1 && rng.chance(50)).then(|| rng.range(1, id - 1));
                Customer {
                    id,
                    name: format!("{} {}", capitalise(first), capitalise(last)),
                    email: format!("{first}.{last}{id}@example.com"),
                    created_at: minute(id * 60),
                    referred_by,
                    referrer: One::default(),
                    orders: Many::default(),
                }
            })
            .collect();

        let products: Vec<Product> = (1..=size.products as i64)
            .map(|id| {
                let i = (id - 1) as usize;
                Product {
                    id,
                    sku: format!("SKU-{id:04}"),
                    name: format!("{} {}", ADJECTIVES[i % 10], NOUNS[(i / 10) % 10]),
                    price_cents: rng.range(199, 9_999) as i32,
                    stock: Many::default(),
                    warehouses: Many::default(),
                }
            })
            .collect();

        let mut orders = Vec::with_capacity(size.orders);
        let mut items = Vec::with_capacity(size.orders * 5);
        let mut order_tags = Vec::with_capacity(size.orders);
        for id in 1..=size.orders as i64 {
            let status = match rng.range(1, 100) {
                1..=60 => "paid",
                61..=85 => "shipped",
                86..=95 => "cancelled",
                _ => "pending",
            };
            let mut total = 0i64;
            for _ in 0..rng.range(1, 9) {
                let product = rng.pick(&products);
                let quantity = rng.range(1, 4) as i32;
                total += i64::from(quantity) * i64::from(product.price_cents);
                items.push(OrderItem {
                    id: items.len() as i64 + 1,
                    order_id: id,
                    product_id: product.id,
                    quantity,
                    unit_price_cents: product.price_cents,
                    order: One::default(),
                    product: One::default(),
                });
            }
            let mut tags: Vec<i64> = (0..rng.range(0, 3))
                .map(|_| rng.range(1, TAGS.len() as i64))
                .collect();
            tags.sort_unstable();
            tags.dedup();
            order_tags.push(tags);
            orders.push(Order {
                id,
                customer_id: rng.range(1, size.customers as i64),
                status: status.to_owned(),
                placed_at: minute(rng.range(0, 365 * 24 * 60)),
                total_cents: total,
                customer: One::default(),
                items: Many::default(),
                tags: Many::default(),
            });
        }

        let tags = (1..)
            .zip(TAGS)
            .map(|(id, name)| Tag {
                id,
                name: name.to_owned(),
            })
            .collect();
        let warehouses: Vec<Warehouse> = WAREHOUSES
            .iter()
            .map(|&(region, code, name)| Warehouse {
                region: region.to_owned(),
                code,
                name: name.to_owned(),
            })
            .collect();

        let mut stock = Vec::new();
        let mut product_warehouses = Vec::with_capacity(products.len());
        for product in &products {
            let mut chosen: Vec<&Warehouse> = Vec::new();
            let wanted = rng.range(2, 4) as usize;
            while chosen.len() < wanted {
                let w = rng.pick(&warehouses);
                if !chosen.iter().any(|c| std::ptr::eq(*c, w)) {
                    chosen.push(w);
                }
            }
            chosen.sort_by(|a, b| (&a.region, a.code).cmp(&(&b.region, b.code)));
            for w in &chosen {
                stock.push(Stock {
                    product_id: product.id,
                    region: w.region.clone(),
                    code: w.code,
                    qty: rng.range(0, 500) as i32,
                    warehouse: One::default(),
                    product: One::default(),
                });
            }
            product_warehouses.push(chosen.iter().map(|w| (w.region.clone(), w.code)).collect());
        }

        Ok(Shop {
            customers,
            products,
            orders,
            items,
            tags,
            warehouses,
            stock,
            order_tags,
            product_warehouses,
        })
    }

    /// How many rows (and junction links) [`insert`](Self::insert) writes.
    pub fn row_count(&self) -> usize {
        self.customers.len()
            + self.products.len()
            + self.orders.len()
            + self.items.len()
            + self.tags.len()
            + self.warehouses.len()
            + self.stock.len()
            + self.order_tags.iter().map(Vec::len).sum::<usize>()
            + self.product_warehouses.iter().map(Vec::len).sum::<usize>()
    }

    /// Writes every row through the ORM: batched `insert_rows(..).include_auto()`
    /// (explicit ids, so the data is the same on every run) and `m2m_add` for the
    /// junction tables. Reports progress to `progress`.
    pub async fn insert<E: Executor>(
        &self,
        ex: &E,
        progress: &mut Progress,
    ) -> matrx_orm::Result<()> {
        progress.phase("customers");
        Customer::insert_rows(&self.customers)
            .include_auto()
            .exec(ex)
            .await?;
        progress.advance(self.customers.len());

        progress.phase("products");
        Product::insert_rows(&self.products)
            .include_auto()
            .exec(ex)
            .await?;
        progress.advance(self.products.len());

        progress.phase("tags");
        Tag::insert_rows(&self.tags).include_auto().exec(ex).await?;
        progress.advance(self.tags.len());

        progress.phase("warehouses");
        Warehouse::insert_many(ex, &self.warehouses).await?;
        progress.advance(self.warehouses.len());

        progress.phase("stock");
        Stock::insert_many(ex, &self.stock).await?;
        progress.advance(self.stock.len());

        progress.phase("orders");
        for chunk in self.orders.chunks(500) {
            Order::insert_rows(chunk).include_auto().exec(ex).await?;
            progress.advance(chunk.len());
        }

        progress.phase("order items");
        for chunk in self.items.chunks(2_000) {
            OrderItem::insert_rows(chunk)
                .include_auto()
                .exec(ex)
                .await?;
            progress.advance(chunk.len());
        }

        // Junction rows go through the relation: one `m2m_add` statement per parent,
        // 50 parents at a time.
        progress.phase("order tags");
        let mut orders = self.orders.clone();
        let mut tagged: Vec<(&mut Order, &Vec<i64>)> = orders
            .iter_mut()
            .zip(&self.order_tags)
            .filter(|(_, tags)| !tags.is_empty())
            .collect();
        for chunk in tagged.chunks_mut(50) {
            let links = chunk.iter().map(|(_, tags)| tags.len()).sum();
            try_join_all(
                chunk
                    .iter_mut()
                    .map(|(order, tags)| order.m2m_add(ex, Order::TAGS, tags.iter().copied())),
            )
            .await?;
            progress.advance(links);
        }

        progress.phase("product warehouses");
        let mut products = self.products.clone();
        let pairs = products.iter_mut().zip(&self.product_warehouses);
        try_join_all(
            pairs.map(|(product, keys)| {
                product.m2m_add(ex, Product::WAREHOUSES, keys.iter().cloned())
            }),
        )
        .await?;
        progress.advance(self.product_warehouses.iter().map(Vec::len).sum());
        progress.finish();
        Ok(())
    }

    /// The generated orders of each customer, by customer id.
    pub fn orders_by_customer(&self) -> HashMap<i64, Vec<&Order>> {
        let mut out: HashMap<i64, Vec<&Order>> = HashMap::new();
        for order in &self.orders {
            out.entry(order.customer_id).or_default().push(order);
        }
        out
    }

    /// The number of generated items of each order, by order id.
    pub fn item_counts(&self) -> HashMap<i64, usize> {
        let mut out = HashMap::new();
        for item in &self.items {
            *out.entry(item.order_id).or_insert(0) += 1;
        }
        out
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A one-line progress bar on stderr, redrawn in place with `\r` when stderr is a
/// terminal (otherwise only the final line is printed).
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    phase: &'static str,
    live: bool,
    started: Instant,
}

impl Progress {
    const WIDTH: usize = 30;

    /// A bar for `total` units of work.
    pub fn new(label: &'static str, total: usize) -> Progress {
        Progress {
            label,
            total: total.max(1),
            done: 0,
            phase: "",
            live: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    /// Names what is being done now.
    pub fn phase(&mut self, phase: &'static str) {
        self.phase = phase;
        self.draw();
    }

    /// Records `n` more units done.
    pub fn advance(&mut self, n: usize) {
        self.done = (self.done + n).min(self.total);
        self.draw();
    }

    /// Completes the bar and ends its line.
    pub fn finish(&mut self) {
        self.done = self.total;
        self.phase = "done";
        self.live = true;
        self.draw();
        eprintln!();
    }

    fn draw(&self) {
        if !self.live {
            return;
        }
        let filled = self.done * Self::WIDTH / self.total;
        let percent = self.done * 100 / self.total;
        let mut err = std::io::stderr().lock();
        // A failed write to stderr only loses the progress display.
        let _ = write!(
            err,
            "\r  {} [{}{}] {percent:>3}%  {:<20} {:>5.1} s",
            self.label,
            "#".repeat(filled),
            ".".repeat(Self::WIDTH - filled),
            self.phase,
            self.started.elapsed().as_secs_f64(),
        );
        let _ = err.flush();
    }
}
