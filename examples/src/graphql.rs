//! A GraphQL API over the shop with `async-graphql`, where resolvers are plain
//! per-object code and a query still costs a fixed number of statements.
//!
//! Each request gets its own [`Session`], put into the GraphQL context by
//! [`execute`]. A resolver takes its parent object and calls `fetch` for one relation of
//! it — `order.fetch(session, Order::CUSTOMER)` — exactly what would be N+1 on a bare
//! pool. `async-graphql` resolves the items of a list, and the fields of an object,
//! as futures joined in one task, so those `fetch` calls are pending at the same time
//! and the session sends **one statement per relation edge per wave**, with the keys
//! de-duplicated:
//!
//! | query | statements |
//! |---|---|
//! | `orders(first: n) { customer { name } items { quantity product { name } } tags { name } }` | 5, whatever `n`: orders, customers, items, products, tags |
//! | `customers(first: n) { orderCount }` | 1: the count is in the root statement |
//! | `customers(first: n) { orderCount orders { id status } }` | 2: customers with counts, orders |
//! | `orders(first: n) { customer { orderCount } }` | 3: orders, customers, the customers' orders |
//!
//! # `orderCount` without N+1
//!
//! A count computed per customer (`Customer::ORDERS.count().load(s, [customer])` in
//! the `orderCount` resolver) would be one statement per customer: aggregates are not
//! batched by the session. Instead:
//!
//! - The `customers` list resolver looks ahead: when the query selects `orderCount`,
//!   it asks for the page with the count annotated
//!   (`Customer::query().annotate(Customer::ORDERS.count())`), one scalar subquery in
//!   the same statement, and hands each customer its count. No order row is read,
//!   and `customers { orderCount }` costs the one statement the page costs anyway.
//! - A customer reached another way (`orders { customer { orderCount } }`) has no
//!   count yet; its resolver falls back to `fetch(Customer::ORDERS)` and counts the
//!   list. Those fetches are batched like any other (one statement per wave for all
//!   the customers of the page), and a sibling `orders` field of the same customer
//!   shares the loaded list: it costs no second statement.
//!
//! Lists come back in a stable order (by id) whatever order the rows arrived in.

use std::sync::Arc;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Request, Response, Schema};
use matrx_orm::prelude::*;
use matrx_orm::Session;

use crate::shop::{Customer, Order, OrderItem, Product, Tag};

/// The largest page `orders(first)` and `customers(first)` accept.
pub const MAX_PAGE: i32 = 100;

/// The shop's GraphQL schema: queries only.
pub type ShopSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema. It holds no database handle: each request brings its own
/// [`Session`] (see [`execute`]).
pub fn schema() -> ShopSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription).finish()
}

/// Runs one GraphQL request in `session`, which the caller opens per request
/// (`db.session()`) and reads the statement count from afterwards
/// (`session.query_count()`). Resolvers find it in the context.
pub async fn execute(
    schema: &ShopSchema,
    session: &Session,
    request: impl Into<Request>,
) -> Response {
    schema.execute(request.into().data(session.clone())).await
}

/// The request's session, put into the context by [`execute`].
fn session<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c Session> {
    ctx.data::<Session>()
}

/// A page size within `0..=MAX_PAGE`, else an error naming the argument.
fn page_size(first: i32) -> async_graphql::Result<u64> {
    if (0..=MAX_PAGE).contains(&first) {
        Ok(first as u64)
    } else {
        Err(format!("`first` must be between 0 and {MAX_PAGE}, not {first}").into())
    }
}

/// The root query.
pub struct Query;

#[Object]
impl Query {
    /// Orders by ascending id: the first `first` after order id `after` (a cursor:
    /// pass the last id of the previous page).
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: i32,
        after: Option<i64>,
    ) -> async_graphql::Result<Vec<OrderNode>> {
        let s = session(ctx)?;
        let mut query = Order::query()
            .order_by(Order::ID.asc())
            .limit(page_size(first)?);
        if let Some(after) = after {
            query = query.filter(Order::ID.gt(after));
        }
        let orders = query.all(s).await?;
        Ok(orders.into_iter().map(|o| OrderNode(Arc::new(o))).collect())
    }

    /// The first `first` customers by ascending id. When `orderCount` is selected,
    /// the count comes in the same statement (see the module docs).
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: i32,
    ) -> async_graphql::Result<Vec<CustomerNode>> {
        let s = session(ctx)?;
        let query = Customer::query()
            .order_by(Customer::ID.asc())
            .limit(page_size(first)?);
        if ctx.look_ahead().field("orderCount").exists() {
            let rows = query.annotate(Customer::ORDERS.count()).all(s).await?;
            Ok(rows
                .into_iter()
                .map(|(c, count)| CustomerNode::new(Arc::new(c), Some(count)))
                .collect())
        } else {
            let rows = query.all(s).await?;
            Ok(rows
                .into_iter()
                .map(|c| CustomerNode::new(Arc::new(c), None))
                .collect())
        }
    }
}

/// An order.
pub struct OrderNode(Arc<Order>);

#[Object(name = "Order")]
impl OrderNode {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn status(&self) -> &str {
        &self.0.status
    }

    /// The customer who placed it: one batched statement for every order of the page.
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CustomerNode>> {
        let customer = self.0.fetch(session(ctx)?, Order::CUSTOMER).await?;
        Ok(customer.map(|c| CustomerNode::new(c, None)))
    }

    /// Its items by id.
    async fn items(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ItemNode>> {
        let mut items = self.0.fetch(session(ctx)?, Order::ITEMS).await?;
        items.sort_by_key(|item| item.id);
        Ok(items.into_iter().map(ItemNode).collect())
    }

    /// Its tags by id.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TagNode>> {
        let mut tags = self.0.fetch(session(ctx)?, Order::TAGS).await?;
        tags.sort_by_key(|tag| tag.id);
        Ok(tags.into_iter().map(TagNode).collect())
    }
}

/// A customer, with its order count when the list that produced it computed it.
pub struct CustomerNode {
    customer: Arc<Customer>,
    order_count: Option<i64>,
}

impl CustomerNode {
    fn new(customer: Arc<Customer>, order_count: Option<i64>) -> Self {
        CustomerNode {
            customer,
            order_count,
        }
    }
}

#[Object(name = "Customer")]
impl CustomerNode {
    async fn id(&self) -> i64 {
        self.customer.id
    }

    async fn name(&self) -> &str {
        &self.customer.name
    }

    /// Its orders by id.
    async fn orders(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderNode>> {
        let mut orders = self.customer.fetch(session(ctx)?, Customer::ORDERS).await?;
        orders.sort_by_key(|order| order.id);
        Ok(orders.into_iter().map(OrderNode).collect())
    }

    /// How many orders it has: from the list's annotated statement when there was
    /// one, else counted from its orders, fetched in the session's batch (shared with
    /// a sibling `orders` field).
    async fn order_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        if let Some(count) = self.order_count {
            return Ok(count);
        }
        let orders = self.customer.fetch(session(ctx)?, Customer::ORDERS).await?;
        Ok(orders.len() as i64)
    }
}

/// A line of an order.
pub struct ItemNode(Arc<OrderItem>);

#[Object(name = "OrderItem")]
impl ItemNode {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn quantity(&self) -> i32 {
        self.0.quantity
    }

    /// Its product: one batched statement for every item of every order of the page.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ProductNode>> {
        let product = self.0.fetch(session(ctx)?, OrderItem::PRODUCT).await?;
        Ok(product.map(ProductNode))
    }
}

/// A product.
pub struct ProductNode(Arc<Product>);

#[Object(name = "Product")]
impl ProductNode {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }
}

/// A tag.
pub struct TagNode(Arc<Tag>);

#[Object(name = "Tag")]
impl TagNode {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }
}
