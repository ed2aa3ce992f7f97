//! The shop models of WORKLOADS.md, declared as a user of matrx-orm declares them.

use chrono::{DateTime, Utc};
use matrx_orm::{Many, Model, One};

/// A `customers` row.
#[derive(Model, Debug)]
#[orm(table = "customers")]
pub struct Customer {
    /// Primary key.
    #[orm(primary_key, auto)]
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Unique email.
    pub email: String,
    /// When the customer signed up.
    pub created_at: DateTime<Utc>,
    /// The customer who referred this one.
    pub referred_by: Option<i64>,
    /// The referrer (self-reference).
    #[orm(belongs_to(key = "referred_by"))]
    pub referrer: One<Customer>,
}

/// A `products` row.
#[derive(Model, Debug)]
#[orm(table = "products")]
pub struct Product {
    /// Primary key.
    #[orm(primary_key, auto)]
    pub id: i64,
    /// Stock-keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// List price.
    pub price_cents: i32,
    /// Stock rows, by (region, code).
    #[orm(has_many(foreign_key = "product_id"))]
    pub stock: Many<Stock>,
    /// Warehouses listing the product (M2M to a composite-key target).
    #[orm(many_to_many(
        through = "product_warehouses",
        source = "product_id",
        target = "region, code"
    ))]
    pub warehouses: Many<Warehouse>,
}

/// An `orders` row.
#[derive(Model, Debug)]
#[orm(table = "orders")]
pub struct Order {
    /// Primary key.
    #[orm(primary_key, auto)]
    pub id: i64,
    /// The customer's id.
    pub customer_id: i64,
    /// Order status.
    pub status: String,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// Sum of its items.
    pub total_cents: i64,
    /// The customer.
    #[orm(belongs_to(key = "customer_id"))]
    pub customer: One<Customer>,
    /// Its items, by id.
    #[orm(has_many(foreign_key = "order_id"))]
    pub items: Many<OrderItem>,
    /// Its tags, by id.
    #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))]
    pub tags: Many<Tag>,
}

/// An `order_items` row.
#[derive(Model, Debug)]
#[orm(table = "order_items")]
pub struct OrderItem {
    /// Primary key.
    #[orm(primary_key, auto)]
    pub id: i64,
    /// The order's id.
    pub order_id: i64,
    /// The product's id.
    pub product_id: i64,
    /// Units.
    pub quantity: i32,
    /// Price per unit.
    pub unit_price_cents: i32,
    /// The product.
    #[orm(belongs_to(key = "product_id"))]
    pub product: One<Product>,
}

/// A `tags` row.
#[derive(Model, Debug)]
#[orm(table = "tags")]
pub struct Tag {
    /// Primary key.
    #[orm(primary_key, auto)]
    pub id: i64,
    /// Unique name.
    pub name: String,
}

/// A `warehouses` row (composite primary key).
#[derive(Model, Debug)]
#[orm(table = "warehouses")]
pub struct Warehouse {
    /// Region code.
    #[orm(primary_key)]
    pub region: String,
    /// Warehouse number in the region.
    #[orm(primary_key)]
    pub code: i32,
    /// Display name.
    pub name: String,
}

/// A `stock` row (composite primary key, composite foreign key).
#[derive(Model, Debug)]
#[orm(table = "stock")]
pub struct Stock {
    /// The product's id.
    #[orm(primary_key)]
    pub product_id: i64,
    /// Warehouse region.
    #[orm(primary_key)]
    pub region: String,
    /// Warehouse number.
    #[orm(primary_key)]
    pub code: i32,
    /// Units in stock.
    pub qty: i32,
    /// The warehouse, by (region, code).
    #[orm(belongs_to(key = "region, code"))]
    pub warehouse: One<Warehouse>,
}
