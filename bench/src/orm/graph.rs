//! Checksums of graphs loaded through the ORM, walked through the relation fields.

use std::sync::Arc;

use crate::checksum::Checksums;
use crate::error::{BenchError, Result};
use crate::orm::models::{Customer, Order, Product};
use crate::strategy::LoadedGraph;

fn chars(s: &str) -> i64 {
    s.chars().count() as i64
}

fn missing(what: &str) -> BenchError {
    BenchError::other(format!("relation not loaded: {what}"))
}

/// W1/W2: orders with customer, items (+ product) and tags.
pub struct Orders(pub Vec<Order>);

impl LoadedGraph for Orders {
    fn checksums(&self) -> Checksums {
        order_checksums(self.0.iter())
            .unwrap_or_else(|e| Checksums::from_pairs([(e.to_string(), 0)]))
    }
}

fn order_checksums<'a>(orders: impl Iterator<Item = &'a Order>) -> Result<Checksums> {
    let (mut n, mut order_id_sum, mut customer_id_sum, mut email_len) = (0, 0, 0, 0);
    let (mut items, mut value, mut item_pos, mut price) = (0, 0, 0, 0);
    let (mut links, mut tag_id_sum, mut tag_pos) = (0, 0, 0);
    for o in orders {
        n += 1;
        order_id_sum += o.id;
        let c = o.customer.get().ok_or_else(|| missing("order.customer"))?;
        customer_id_sum += c.id;
        email_len += chars(&c.email);
        for (pos, i) in (1..).zip(o.items.get().ok_or_else(|| missing("order.items"))?) {
            items += 1;
            value += i64::from(i.quantity) * i64::from(i.unit_price_cents);
            item_pos += pos * i.id;
            price += i64::from(
                i.product
                    .get()
                    .ok_or_else(|| missing("item.product"))?
                    .price_cents,
            );
        }
        for (pos, t) in (1..).zip(o.tags.get().ok_or_else(|| missing("order.tags"))?) {
            links += 1;
            tag_id_sum += t.id;
            tag_pos += pos * t.id;
        }
    }
    Ok(Checksums::from_pairs([
        ("orders", n),
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
    ]))
}

/// W3: products with stock (+ warehouse) and warehouses.
pub struct Products(pub Vec<Product>);

impl LoadedGraph for Products {
    fn checksums(&self) -> Checksums {
        product_checksums(&self.0).unwrap_or_else(|e| Checksums::from_pairs([(e.to_string(), 0)]))
    }
}

fn product_checksums(products: &[Product]) -> Result<Checksums> {
    let (mut id_sum, mut rows, mut qty, mut pos_qty, mut wh_len) = (0, 0, 0, 0, 0);
    let (mut links, mut pw_len, mut pw_pos) = (0, 0, 0);
    for p in products {
        id_sum += p.id;
        for (pos, s) in (1..).zip(p.stock.get().ok_or_else(|| missing("product.stock"))?) {
            rows += 1;
            qty += i64::from(s.qty);
            pos_qty += pos * i64::from(s.qty);
            wh_len += chars(
                &s.warehouse
                    .get()
                    .ok_or_else(|| missing("stock.warehouse"))?
                    .name,
            );
        }
        for (pos, w) in (1..).zip(
            p.warehouses
                .get()
                .ok_or_else(|| missing("product.warehouses"))?,
        ) {
            links += 1;
            pw_len += chars(&w.name);
            pw_pos += pos * i64::from(w.code);
        }
    }
    Ok(Checksums::from_pairs([
        ("products", products.len() as i64),
        ("product_id_sum", id_sum),
        ("stock_rows", rows),
        ("stock_qty_sum", qty),
        ("stock_pos_qty_sum", pos_qty),
        ("stock_wh_name_len_sum", wh_len),
        ("pw_links", links),
        ("pw_wh_name_len_sum", pw_len),
        ("pw_pos_code_sum", pw_pos),
    ]))
}

/// W4: per task, its orders with customer and tags (as returned by per-object code).
pub struct Requests(pub Vec<Vec<RequestOrder>>);

/// One W4 order: the order and what its pipeline loaded.
pub struct RequestOrder {
    /// The order.
    pub order: Order,
    /// Its customer.
    pub customer: Option<Arc<Customer>>,
    /// Its tags.
    pub tags: Vec<Arc<crate::orm::models::Tag>>,
}

impl LoadedGraph for Requests {
    fn checksums(&self) -> Checksums {
        let (mut n, mut id_sum, mut cust_sum, mut email_len) = (0, 0, 0, 0);
        let (mut links, mut tag_sum, mut tag_pos) = (0, 0, 0);
        for r in self.0.iter().flatten() {
            n += 1;
            id_sum += r.order.id;
            if let Some(c) = &r.customer {
                cust_sum += c.id;
                email_len += chars(&c.email);
            }
            for (pos, t) in (1..).zip(&r.tags) {
                links += 1;
                tag_sum += t.id;
                tag_pos += pos * t.id;
            }
        }
        Checksums::from_pairs([
            ("orders", n),
            ("order_id_sum", id_sum),
            ("customer_id_sum", cust_sum),
            ("customer_email_len_sum", email_len),
            ("tag_links", links),
            ("tag_id_sum", tag_sum),
            ("tag_pos_sum", tag_pos),
        ])
    }
}

/// W5: per task, its orders with customer (+ referrer) and items (+ product).
pub struct Waves(pub Vec<Vec<WaveOrder>>);

/// One W5 order and what its pipeline loaded.
pub struct WaveOrder {
    /// The order.
    pub order: Order,
    /// Its customer.
    pub customer: Option<Arc<Customer>>,
    /// The customer's referrer.
    pub referrer: Option<Arc<Customer>>,
    /// Its items with their products.
    pub items: Vec<(Arc<crate::orm::models::OrderItem>, Option<Arc<Product>>)>,
}

impl LoadedGraph for Waves {
    fn checksums(&self) -> Checksums {
        let (mut n, mut id_sum, mut cust_sum) = (0, 0, 0);
        let (mut refs, mut ref_sum, mut ref_len) = (0, 0, 0);
        let (mut items, mut value, mut price) = (0, 0, 0);
        for w in self.0.iter().flatten() {
            n += 1;
            id_sum += w.order.id;
            if let Some(c) = &w.customer {
                cust_sum += c.id;
            }
            if let Some(r) = &w.referrer {
                refs += 1;
                ref_sum += r.id;
                ref_len += chars(&r.email);
            }
            for (item, product) in &w.items {
                items += 1;
                value += i64::from(item.quantity) * i64::from(item.unit_price_cents);
                if let Some(p) = product {
                    price += i64::from(p.price_cents);
                }
            }
        }
        Checksums::from_pairs([
            ("orders", n),
            ("order_id_sum", id_sum),
            ("customer_id_sum", cust_sum),
            ("referrers", refs),
            ("referrer_id_sum", ref_sum),
            ("referrer_email_len_sum", ref_len),
            ("items", items),
            ("item_value_sum", value),
            ("product_price_sum", price),
        ])
    }
}
