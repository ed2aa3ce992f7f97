//! The shop schema of the benchmark (customers, orders, items, products, tags,
//! warehouses with a composite key, stock with a composite foreign key, and a
//! many-to-many to the composite-key warehouses), as user code would declare it.

use chrono::{DateTime, Utc};
use matrx_orm::prelude::*;
use matrx_orm::ModelMeta;

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "customers")]
pub struct Customer {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub name: String,
    #[orm(unique)]
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub referred_by: Option<i64>,
    #[orm(belongs_to(key = "referred_by"))]
    pub referrer: One<Customer>,
    #[orm(has_many(foreign_key = "customer_id"))]
    pub orders: Many<Order>,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "products")]
pub struct Product {
    #[orm(primary_key, auto)]
    pub id: i64,
    #[orm(unique)]
    pub sku: String,
    pub name: String,
    pub price_cents: i32,
    #[orm(has_many(foreign_key = "product_id"))]
    pub stock: Many<Stock>,
    #[orm(many_to_many(
        through = "product_warehouses",
        source = "product_id",
        target = "region, code"
    ))]
    pub warehouses: Many<Warehouse>,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "orders")]
pub struct Order {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub customer_id: i64,
    pub status: String,
    pub placed_at: DateTime<Utc>,
    pub total_cents: i64,
    #[orm(belongs_to(key = "customer_id"))]
    pub customer: One<Customer>,
    #[orm(has_many(foreign_key = "order_id"))]
    pub items: Many<OrderItem>,
    #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))]
    pub tags: Many<Tag>,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "order_items")]
pub struct OrderItem {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub order_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_cents: i32,
    #[orm(belongs_to(key = "order_id"))]
    pub order: One<Order>,
    #[orm(belongs_to(key = "product_id"))]
    pub product: One<Product>,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "tags")]
pub struct Tag {
    #[orm(primary_key, auto)]
    pub id: i64,
    #[orm(unique)]
    pub name: String,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "warehouses")]
pub struct Warehouse {
    #[orm(primary_key)]
    pub region: String,
    #[orm(primary_key)]
    pub code: i32,
    pub name: String,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "stock")]
pub struct Stock {
    #[orm(primary_key)]
    pub product_id: i64,
    #[orm(primary_key)]
    pub region: String,
    #[orm(primary_key)]
    pub code: i32,
    pub qty: i32,
    #[orm(belongs_to(key = "region, code"))]
    pub warehouse: One<Warehouse>,
    #[orm(belongs_to(key = "product_id"))]
    pub product: One<Product>,
}

/// Every shop model, for DDL.
pub fn models() -> Vec<&'static ModelMeta> {
    vec![
        Customer::META,
        Product::META,
        Order::META,
        OrderItem::META,
        Tag::META,
        Warehouse::META,
        Stock::META,
    ]
}
