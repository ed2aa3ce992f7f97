//! Expansion tests of `#[derive(Model)]` (no database): the models of the benchmark
//! schema (`shop`), a model with a column of every supported type, and checks of the
//! emitted metadata, column constants, relation types and keys.

#![deny(missing_docs, warnings, clippy::all, clippy::pedantic)]

use std::marker::PhantomData;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use matrx_orm::{Column, Many, Model, ModelMeta, One, Relation, RelationKind, RelationMeta};
use rust_decimal::Decimal;

/// The benchmark schema, written as a user would (documented: the crate denies
/// `missing_docs`, so the generated items must carry docs too).
pub mod shop {
    use super::*;

    /// `shop.customers`, with a self-reference.
    #[derive(Model, Debug, Clone)]
    #[orm(schema = "shop", table = "customers")]
    pub struct Customer {
        /// Identity.
        #[orm(primary_key, auto)]
        pub id: i64,
        /// Name.
        pub name: String,
        /// Email.
        #[orm(unique)]
        pub email: String,
        /// Creation time.
        pub created_at: DateTime<Utc>,
        /// The customer who referred this one.
        #[orm(index)]
        pub referred_by: Option<i64>,
        /// Loaded `referred_by`.
        #[orm(belongs_to(key = "referred_by"))]
        pub referrer: One<Customer>,
        /// Orders of the customer.
        #[orm(has_many(foreign_key = "customer_id"))]
        pub orders: Many<Order>,
    }

    /// `shop.products`.
    #[derive(Model, Debug, Clone)]
    #[orm(schema = "shop", table = "products")]
    pub struct Product {
        /// Identity.
        #[orm(primary_key, auto)]
        pub id: i64,
        /// Stock keeping unit.
        #[orm(unique)]
        pub sku: String,
        /// Name.
        pub name: String,
        /// Price.
        pub price_cents: i32,
        /// Stock rows (composite key) of the product.
        #[orm(has_many(foreign_key = "product_id"))]
        pub stock: Many<Stock>,
        /// Warehouses (composite key) listing the product.
        #[orm(many_to_many(
            through = "product_warehouses",
            source = "product_id",
            target = "region, code"
        ))]
        pub warehouses: Many<Warehouse>,
    }

    /// `shop.orders`.
    #[derive(Model, Debug, Clone)]
    #[orm(schema = "shop", table = "orders")]
    pub struct Order {
        /// Identity.
        #[orm(primary_key, auto)]
        pub id: i64,
        /// Buyer.
        #[orm(index)]
        pub customer_id: i64,
        /// Status.
        pub status: String,
        /// Placement time.
        pub placed_at: DateTime<Utc>,
        /// Total.
        pub total_cents: i64,
        /// Loaded buyer.
        #[orm(belongs_to(key = "customer_id"))]
        pub customer: One<Customer>,
        /// Lines.
        #[orm(has_many(foreign_key = "order_id"))]
        pub items: Many<OrderItem>,
        /// Tags, through `order_tags`.
        #[orm(many_to_many(through = "order_tags", source = "order_id", target = "tag_id"))]
        pub tags: Many<Tag>,
    }

    /// `shop.order_items`.
    #[derive(Model, Debug, Clone)]
    #[orm(schema = "shop", table = "order_items")]
    pub struct OrderItem {
        /// Identity.
        #[orm(primary_key, auto)]
        pub id: i64,
        /// Order.
        pub order_id: i64,
        /// Product.
        pub product_id: i64,
        /// Quantity.
        pub quantity: i32,
        /// Unit price.
        pub unit_price_cents: i32,
        /// Loaded order.
        #[orm(belongs_to(key = "order_id"))]
        pub order: One<Order>,
        /// Loaded product.
        #[orm(belongs_to(key = "product_id"))]
        pub product: One<Product>,
    }

    /// `shop.tags`.
    #[derive(Model, Debug, Clone)]
    #[orm(schema = "shop", table = "tags")]
    pub struct Tag {
        /// Identity.
        #[orm(primary_key, auto)]
        pub id: i64,
        /// Name.
        #[orm(unique)]
        pub name: String,
    }

    /// `shop.warehouses`: composite primary key.
    #[derive(Model, Debug, Clone)]
    #[orm(schema = "shop", table = "warehouses")]
    pub struct Warehouse {
        /// Key part 1.
        #[orm(primary_key)]
        pub region: String,
        /// Key part 2.
        #[orm(primary_key)]
        pub code: i32,
        /// Name.
        pub name: String,
        /// Stock rows, by the composite key.
        #[orm(has_many(foreign_key = "region, code"))]
        pub stock: Many<Stock>,
    }

    /// `shop.stock`: composite primary key and composite foreign key.
    #[derive(Model, Debug, Clone)]
    #[orm(schema = "shop")]
    pub struct Stock {
        /// Key part 1.
        #[orm(primary_key)]
        pub product_id: i64,
        /// Key part 2.
        #[orm(primary_key)]
        pub region: String,
        /// Key part 3.
        #[orm(primary_key)]
        pub code: i32,
        /// Quantity.
        pub qty: i32,
        /// Loaded product.
        #[orm(belongs_to(key = "product_id"))]
        pub product: One<Product>,
        /// Loaded warehouse, by the composite key.
        #[orm(belongs_to(key = "region, code"))]
        pub warehouse: One<Warehouse>,
    }
}

/// Every supported column type, renames, DDL overrides, explicit references, `Self`.
pub mod kinds {
    use super::*;

    /// A column of each type.
    #[derive(Model, Debug, Clone)]
    pub struct Everything {
        /// i64 key.
        #[orm(primary_key, auto)]
        pub id: i64,
        /// smallint.
        pub small: i16,
        /// integer.
        pub int: i32,
        /// real.
        pub float: f32,
        /// double precision.
        pub double: f64,
        /// numeric.
        pub amount: Decimal,
        /// boolean.
        pub flag: bool,
        /// text, renamed.
        #[orm(column = "display_name", sql_type = "varchar(200)")]
        pub label: String,
        /// uuid.
        #[orm(unique)]
        pub token: uuid::Uuid,
        /// timestamptz with a default.
        #[orm(default = "now()")]
        pub created_at: DateTime<Utc>,
        /// timestamp.
        pub local: NaiveDateTime,
        /// date.
        pub day: NaiveDate,
        /// time.
        pub at: NaiveTime,
        /// jsonb.
        pub doc: serde_json::Value,
        /// bytea.
        pub blob: Vec<u8>,
        /// integer[].
        pub ints: Vec<i32>,
        /// text[].
        pub names: Vec<String>,
        /// Nullable bigint.
        pub opt_big: Option<i64>,
        /// Nullable text.
        pub opt_text: Option<String>,
        /// Nullable timestamptz.
        pub opt_time: Option<DateTime<Utc>>,
        /// Nullable jsonb, spelt with a full path.
        pub opt_doc: std::option::Option<serde_json::Value>,
        /// A keyword field.
        pub r#type: String,
        /// Raw-ident column with a custom DDL type (not a `SqlType`).
        #[orm(sql_type = "citext")]
        pub r#ref: Option<String>,
    }

    /// A tree, written with `Self`, with a self many-to-many.
    #[derive(Model, Debug, Clone)]
    #[orm(table = "categories")]
    pub struct Category {
        /// Key.
        #[orm(primary_key)]
        pub id: i32,
        /// Parent key.
        pub parent_id: Option<i32>,
        /// Code, referenced by children.
        #[orm(unique, column = "category_code")]
        pub code: String,
        /// Loaded parent.
        #[orm(belongs_to(key = "parent_id"))]
        pub parent: One<Self>,
        /// Children.
        #[orm(has_many(foreign_key = "parent_id"))]
        pub children: Many<Self>,
        /// Related categories (self many-to-many).
        #[orm(many_to_many(
            through = "category_links",
            through_schema = "meta",
            source = "from_id",
            target = "to_id"
        ))]
        pub related: Many<Category>,
        /// The one label whose `category_code` is our `code`.
        #[orm(has_one(foreign_key = "category_code", references = "code"))]
        pub label: One<CategoryLabel>,
    }

    /// A label, referencing a category by a non-key column.
    #[derive(Model, Debug, Clone)]
    pub struct CategoryLabel {
        /// Key.
        #[orm(primary_key)]
        pub id: uuid::Uuid,
        /// Points at `Category::code`.
        pub category_code: Option<String>,
        /// Loaded category, by `code` rather than its key.
        #[orm(belongs_to(key = "category_code", references = "code"))]
        pub category: One<Category>,
    }
}

/// A private model: the generated items take its visibility.
#[derive(Model)]
struct Note {
    #[orm(primary_key)]
    id: i32,
    body: String,
}

use kinds::*;
use shop::*;

fn time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn customer(id: i64, referred_by: Option<i64>) -> Customer {
    Customer {
        id,
        name: format!("c{id}"),
        email: format!("c{id}@example.com"),
        created_at: time(0),
        referred_by,
        referrer: One::default(),
        orders: Many::default(),
    }
}

fn order(id: i64, customer_id: i64) -> Order {
    Order {
        id,
        customer_id,
        status: "new".into(),
        placed_at: time(1),
        total_cents: 100,
        customer: One::default(),
        items: Many::default(),
        tags: Many::default(),
    }
}

fn warehouse(region: &str, code: i32) -> Warehouse {
    Warehouse {
        region: region.into(),
        code,
        name: "w".into(),
        stock: Many::default(),
    }
}

fn stock(product_id: i64, region: &str, code: i32) -> Stock {
    Stock {
        product_id,
        region: region.into(),
        code,
        qty: 5,
        product: One::default(),
        warehouse: One::default(),
    }
}

fn column_names(meta: &ModelMeta) -> Vec<&'static str> {
    meta.columns.iter().map(|c| c.name).collect()
}

fn sql_types(meta: &ModelMeta) -> Vec<String> {
    meta.columns
        .iter()
        .map(|c| (c.sql_type)().into_owned())
        .collect()
}

fn relation<R: Relation>(_: R) -> &'static RelationMeta {
    R::META
}

/// Compiles only if `R`'s associated types are the given ones.
fn relation_types<R, S, T, K>(_: R, _: PhantomData<(S, T, K)>)
where
    R: Relation<Source = S, Target = T, Key = K>,
{
}

#[test]
fn customer_meta() {
    let meta = Customer::META;
    assert_eq!(meta.name, "Customer");
    assert_eq!(meta.schema, Some("shop"));
    assert_eq!(meta.table, "customers");
    assert_eq!(
        column_names(meta),
        ["id", "name", "email", "created_at", "referred_by"]
    );
    assert_eq!(
        sql_types(meta),
        ["bigint", "text", "text", "timestamptz", "bigint"]
    );
    assert_eq!(meta.primary_key, [0]);
    let flags: Vec<_> = meta
        .columns
        .iter()
        .map(|c| (c.nullable, c.primary_key, c.auto, c.unique, c.indexed))
        .collect();
    assert_eq!(
        flags,
        [
            (false, true, true, false, false),
            (false, false, false, false, false),
            (false, false, false, true, false),
            (false, false, false, false, false),
            (true, false, false, false, true),
        ]
    );
    assert!(meta.columns.iter().all(|c| c.default_sql.is_none()));

    let names: Vec<_> = meta.relations.iter().map(|r| r.name).collect();
    assert_eq!(names, ["referrer", "orders"]);
    let referrer = meta.relation("referrer").unwrap();
    assert_eq!(referrer.kind, RelationKind::BelongsTo);
    assert_eq!((referrer.target)().name, "Customer");
    assert_eq!(referrer.source_columns, ["referred_by"]);
    assert!(referrer.target_fields.is_empty());
    assert!(referrer.through.is_none());
    let orders = meta.relation("orders").unwrap();
    assert_eq!(orders.kind, RelationKind::HasMany);
    assert_eq!((orders.target)().table, "orders");
    assert_eq!(orders.source_columns, ["id"]);
    assert_eq!(orders.target_fields, ["customer_id"]);
}

#[test]
fn column_constants() {
    assert_eq!(Customer::ID.name(), "id");
    assert_eq!(Customer::EMAIL.name(), "email");
    assert_eq!(Customer::REFERRED_BY.index(), 4);
    assert!(Customer::REFERRED_BY.meta().nullable);
    assert_eq!(Everything::LABEL.name(), "display_name");
    assert_eq!(Everything::TYPE.name(), "type");
    assert_eq!(Everything::REF.meta().field, "ref");
    assert_eq!(Category::CODE.name(), "category_code");
    assert_eq!(Note::BODY.index(), 1);
    assert_eq!(format!("{:?}", Order::STATUS), "Order.status");

    // The value type is the field type with one `Option` stripped.
    let _: Column<Customer, i64> = Customer::REFERRED_BY;
    let _: Column<Everything, DateTime<Utc>> = Everything::OPT_TIME;
    let _: Column<Everything, serde_json::Value> = Everything::OPT_DOC;
    let _: Column<Everything, Vec<String>> = Everything::NAMES;
    let _: Column<Everything, Decimal> = Everything::AMOUNT;
}

#[test]
fn every_type() {
    let meta = Everything::META;
    assert_eq!(meta.table, "everything");
    assert_eq!(meta.schema, None);
    assert_eq!(
        sql_types(meta),
        [
            "bigint",
            "smallint",
            "integer",
            "real",
            "double precision",
            "numeric",
            "boolean",
            "varchar(200)",
            "uuid",
            "timestamptz",
            "timestamp",
            "date",
            "time",
            "jsonb",
            "bytea",
            "integer[]",
            "text[]",
            "bigint",
            "text",
            "timestamptz",
            "jsonb",
            "text",
            "citext",
        ]
    );
    let nullable: Vec<_> = meta
        .columns
        .iter()
        .filter(|c| c.nullable)
        .map(|c| c.field)
        .collect();
    assert_eq!(
        nullable,
        ["opt_big", "opt_text", "opt_time", "opt_doc", "ref"]
    );
    let fields: Vec<_> = meta.columns.iter().map(|c| c.field).collect();
    assert_eq!(fields[7], "label");
    assert_eq!(meta.columns[7].name, "display_name");
    assert_eq!(fields[21], "type");
    let created = meta.column("created_at").unwrap();
    assert_eq!(created.default_sql, Some("now()"));
    assert!(created.auto, "a default implies auto");
    assert!(meta.column("token").unwrap().unique);
    assert!(meta.relations.is_empty());
}

#[test]
fn values_and_keys() {
    let c = customer(7, None);
    assert_eq!(c.key(), 7);
    assert_eq!(format!("{:?}", c.value(0)), "7");
    assert_eq!(format!("{:?}", c.value(1)), "\"c7\"");
    assert_eq!(format!("{:?}", c.value(4)), "None");
    assert_eq!(format!("{:?}", c.value(99)), "None");

    let w = warehouse("eu", 3);
    assert_eq!(w.key(), ("eu".to_string(), 3));
    assert_eq!(Warehouse::META.primary_key, [0, 1]);
    let s = stock(1, "eu", 3);
    assert_eq!(s.key(), (1, "eu".to_string(), 3));
    assert_eq!(Stock::META.table, "stock");
    assert_eq!(Stock::META.primary_key, [0, 1, 2]);
    assert_eq!(format!("{:?}", s.value(3)), "5");
}

#[test]
fn belongs_to_keys() {
    relation_types(Customer::REFERRER, PhantomData::<(Customer, Customer, i64)>);
    let root = customer(1, None);
    let referred = customer(2, Some(1));
    assert_eq!(
        <__CustomerRel_referrer as Relation>::source_key(&root),
        None,
        "NULL self-reference"
    );
    assert_eq!(
        <__CustomerRel_referrer as Relation>::source_key(&referred),
        Some(1)
    );
    assert_eq!(
        <__CustomerRel_referrer as Relation>::target_key(&root),
        Some(1)
    );
    assert_eq!(relation(Customer::REFERRER).name, "referrer");

    relation_types(Order::CUSTOMER, PhantomData::<(Order, Customer, i64)>);
    let o = order(10, 2);
    assert_eq!(<__OrderRel_customer as Relation>::source_key(&o), Some(2));
    assert_eq!(relation(Order::CUSTOMER).source_columns, ["customer_id"]);

    relation_types(
        Stock::WAREHOUSE,
        PhantomData::<(Stock, Warehouse, (String, i32))>,
    );
    let s = stock(1, "eu", 3);
    assert_eq!(
        <__StockRel_warehouse as Relation>::source_key(&s),
        Some(("eu".to_string(), 3))
    );
    assert_eq!(
        <__StockRel_warehouse as Relation>::target_key(&warehouse("eu", 3)),
        Some(("eu".to_string(), 3))
    );
    let meta = relation(Stock::WAREHOUSE);
    assert_eq!(meta.source_columns, ["region", "code"]);
    assert!(meta.target_fields.is_empty());
    assert_eq!(meta.name, Stock::META.relations[1].name);
}

#[test]
fn has_many_keys() {
    relation_types(Order::ITEMS, PhantomData::<(Order, OrderItem, i64)>);
    let o = order(10, 2);
    let item = OrderItem {
        id: 5,
        order_id: 10,
        product_id: 3,
        quantity: 1,
        unit_price_cents: 9,
        order: One::default(),
        product: One::default(),
    };
    assert_eq!(<__OrderRel_items as Relation>::source_key(&o), Some(10));
    assert_eq!(<__OrderRel_items as Relation>::target_key(&item), Some(10));
    assert_eq!(
        <__OrderItemRel_product as Relation>::source_key(&item),
        Some(3)
    );

    relation_types(
        Warehouse::STOCK,
        PhantomData::<(Warehouse, Stock, (String, i32))>,
    );
    let w = warehouse("us", 4);
    assert_eq!(
        <__WarehouseRel_stock as Relation>::source_key(&w),
        Some(("us".to_string(), 4))
    );
    assert_eq!(
        <__WarehouseRel_stock as Relation>::target_key(&stock(1, "us", 4)),
        Some(("us".to_string(), 4))
    );
    let meta = relation(Warehouse::STOCK);
    assert_eq!(meta.kind, RelationKind::HasMany);
    assert_eq!(meta.source_columns, ["region", "code"]);
    assert_eq!(meta.target_fields, ["region", "code"]);

    let meta = relation(Product::STOCK);
    assert_eq!(meta.source_columns, ["id"]);
    assert_eq!(meta.target_fields, ["product_id"]);
}

#[test]
fn many_to_many() {
    relation_types(Order::TAGS, PhantomData::<(Order, Tag, i64)>);
    let meta = relation(Order::TAGS);
    assert_eq!(meta.kind, RelationKind::ManyToMany);
    assert_eq!(meta.source_columns, ["id"]);
    assert!(meta.target_fields.is_empty());
    let through = meta.through.as_ref().unwrap();
    assert_eq!(through.schema, None);
    assert_eq!(through.table, "order_tags");
    assert_eq!(through.source_columns, ["order_id"]);
    assert_eq!(through.target_columns, ["tag_id"]);
    let o = order(10, 2);
    assert_eq!(<__OrderRel_tags as Relation>::source_key(&o), Some(10));
    let tag = Tag {
        id: 1,
        name: "new".into(),
    };
    assert_eq!(<__OrderRel_tags as Relation>::target_key(&tag), None);

    let through = relation(Product::WAREHOUSES).through.as_ref().unwrap();
    assert_eq!(through.table, "product_warehouses");
    assert_eq!(through.target_columns, ["region", "code"]);
    assert_eq!(
        (relation(Product::WAREHOUSES).target)().primary_key.len(),
        2
    );

    let through = relation(Category::RELATED).through.as_ref().unwrap();
    assert_eq!(through.schema, Some("meta"));
    assert_eq!(through.source_columns, ["from_id"]);
}

#[test]
fn self_and_explicit_references() {
    let parent = Category {
        id: 1,
        parent_id: None,
        code: "root".into(),
        parent: One::default(),
        children: Many::default(),
        related: Many::default(),
        label: One::default(),
    };
    let child = Category {
        id: 2,
        parent_id: Some(1),
        code: "leaf".into(),
        ..parent.clone()
    };
    relation_types(Category::PARENT, PhantomData::<(Category, Category, i32)>);
    relation_types(Category::CHILDREN, PhantomData::<(Category, Category, i32)>);
    assert_eq!(
        <__CategoryRel_parent as Relation>::source_key(&parent),
        None
    );
    assert_eq!(
        <__CategoryRel_parent as Relation>::source_key(&child),
        Some(1)
    );
    assert_eq!(
        <__CategoryRel_children as Relation>::source_key(&parent),
        Some(1)
    );
    assert_eq!(
        <__CategoryRel_children as Relation>::target_key(&child),
        Some(1)
    );
    assert_eq!(
        <__CategoryRel_children as Relation>::target_key(&parent),
        None
    );

    // has_one with `references`: keyed by the referenced field's type, not the PK's.
    relation_types(
        Category::LABEL,
        PhantomData::<(Category, CategoryLabel, String)>,
    );
    let meta = relation(Category::LABEL);
    assert_eq!(meta.kind, RelationKind::HasOne);
    assert_eq!(meta.source_columns, ["category_code"]);
    assert_eq!(meta.target_fields, ["category_code"]);
    let label = CategoryLabel {
        id: uuid::Uuid::nil(),
        category_code: Some("root".into()),
        category: One::default(),
    };
    assert_eq!(
        <__CategoryRel_label as Relation>::source_key(&parent),
        Some("root".into())
    );
    assert_eq!(
        <__CategoryRel_label as Relation>::target_key(&label),
        Some("root".into())
    );

    // belongs_to with `references`: target fields named, read off the target.
    relation_types(
        CategoryLabel::CATEGORY,
        PhantomData::<(CategoryLabel, Category, String)>,
    );
    let meta = relation(CategoryLabel::CATEGORY);
    assert_eq!(meta.source_columns, ["category_code"]);
    assert_eq!(meta.target_fields, ["code"]);
    assert_eq!(
        <__CategoryLabelRel_category as Relation>::target_key(&parent),
        Some("root".into())
    );
    assert_eq!(
        <__CategoryLabelRel_category as Relation>::source_key(&label),
        Some("root".into())
    );
}
