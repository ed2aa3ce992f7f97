//! A web handler written as plain per-object code — get a customer, then for each of
//! its orders fetch the items, each item's product and the tags — that still costs a
//! fixed number of queries.
//!
//! The handler opens a `Session` per request. Inside it, lazy loads that are pending
//! at the same time (here: the futures of one `try_join_all`) are sent as one batched
//! query per relation, so the request costs 5 queries however many orders, items and
//! tags the customer has. The same code on the bare pool costs one query per call.
//!
//! ```text
//! cargo run --release --example web_handler
//! ```
//!
//! The app is driven in-process (`tower::ServiceExt::oneshot`): no port is opened.
//! PostgreSQL is found like the tour's (`DATABASE_URL`, else the local default, else
//! a throwaway cluster); the example works in a schema of its own, dropped at the end.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::try_join_all;
use matrx_orm::prelude::*;
use matrx_orm_examples::dataset::{Progress, Shop, Size};
use matrx_orm_examples::shop::{self, Customer, Order, OrderItem};
use matrx_orm_testkit::TestSchema;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ----- the app ------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct CustomerOrders {
    customer: String,
    orders: Vec<OrderView>,
}

#[derive(Serialize, Deserialize)]
struct OrderView {
    id: i64,
    status: String,
    tags: Vec<String>,
    items: Vec<ItemView>,
}

#[derive(Serialize, Deserialize)]
struct ItemView {
    product: String,
    quantity: i32,
}

fn app(db: Db) -> Router {
    Router::new()
        .route("/customers/{id}/orders", get(customer_orders))
        .with_state(db)
}

/// `GET /customers/{id}/orders`: one session per request; the query count it cost
/// goes back in a header.
async fn customer_orders(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, AppError> {
    let session = db.session();
    let body = load_customer_orders(&session, id).await?;
    let queries = session.query_count().to_string();
    Ok(([("x-query-count", queries)], Json(body)))
}

/// The handler's work, one object at a time. Generic over where it runs, so `main`
/// can also run it on the bare pool for comparison.
async fn load_customer_orders<E: Executor>(ex: &E, id: i64) -> matrx_orm::Result<CustomerOrders> {
    let customer = Customer::get(ex, &id).await?;
    let orders = customer.fetch_ifk(ex, Customer::ORDERS).await?;
    let orders = try_join_all(orders.iter().map(|order| async move {
        let (items, tags) = tokio::try_join!(
            order.fetch_ifk(ex, Order::ITEMS),
            order.fetch_m2m(ex, Order::TAGS),
        )?;
        let items = try_join_all(items.iter().map(|item| async move {
            let product = item.fetch_fk(ex, OrderItem::PRODUCT).await?;
            Ok::<_, matrx_orm::Error>(ItemView {
                product: product.map(|p| p.name.clone()).unwrap_or_default(),
                quantity: item.quantity,
            })
        }))
        .await?;
        Ok::<_, matrx_orm::Error>(OrderView {
            id: order.id,
            status: order.status.clone(),
            tags: tags.iter().map(|t| t.name.clone()).collect(),
            items,
        })
    }))
    .await?;
    Ok(CustomerOrders {
        customer: customer.name,
        orders,
    })
}

/// An ORM error as an HTTP response: 404 for a missing row, 500 otherwise.
struct AppError(matrx_orm::Error);

impl From<matrx_orm::Error> for AppError {
    fn from(err: matrx_orm::Error) -> Self {
        AppError(err)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            matrx_orm::Error::NotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.0.to_string()).into_response()
    }
}

// ----- running it -----------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let outcome = run().await;
    matrx_orm_testkit::shutdown().await;
    outcome
}

/// Creates a schema, runs the demo in it, and drops it whatever happened.
async fn run() -> Result<(), BoxError> {
    let server = matrx_orm_testkit::server().await?;
    println!("PostgreSQL {}", server.major_version());
    let schema = TestSchema::create("web_handler").await?;
    let outcome = demo(&schema).await;
    let dropped = schema.drop_now().await;
    outcome?;
    Ok(dropped?)
}

async fn demo(schema: &TestSchema) -> Result<(), BoxError> {
    let db = Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(8)
        .connect()
        .await?;
    matrx_orm::ddl::create_tables(&db, &shop::models()).await?;
    let size = Size {
        customers: 40,
        products: 30,
        orders: 100,
    };
    let data = Shop::generate(size, 2024)?;
    data.insert(
        &db,
        &mut Progress::new("building the shop", data.row_count()),
    )
    .await?;

    // The customer with the most orders.
    let by_customer = data.orders_by_customer();
    let (&id, _) = by_customer
        .iter()
        .max_by_key(|(id, orders)| (orders.len(), std::cmp::Reverse(**id)))
        .ok_or("the dataset has no orders")?;

    let (status, queries, body) = call(app(db.clone()), &format!("/customers/{id}/orders")).await?;
    println!("\nGET /customers/{id}/orders -> {status}");
    print_response(&body)?;

    // The same handler body on the pool, without a session: one query per call.
    let before = db.query_count();
    load_customer_orders(&db, id).await?;
    let without = db.query_count() - before;
    println!("\nthis request cost {queries} queries ({without} without a session)");
    println!("(customer, orders, items, tags, products: one query per relation)");

    let (status, _, body) = call(app(db), "/customers/999999/orders").await?;
    println!("\nGET /customers/999999/orders -> {status}: {body}");
    Ok(())
}

/// Sends one GET request to `app` in-process; returns the status, the query count
/// header and the body.
async fn call(app: Router, uri: &str) -> Result<(StatusCode, String, String), BoxError> {
    let request = Request::get(uri).body(Body::empty())?;
    let response = app.oneshot(request).await?;
    let status = response.status();
    let queries = match response.headers().get("x-query-count") {
        Some(value) => value.to_str()?.to_owned(),
        None => "?".to_owned(),
    };
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((status, queries, String::from_utf8(body.to_vec())?))
}

/// Prints the JSON body with one order per line.
fn print_response(body: &str) -> Result<(), BoxError> {
    let response: CustomerOrders = serde_json::from_str(body)?;
    let orders: Vec<String> = response
        .orders
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    let customer = serde_json::to_string(&response.customer)?;
    println!("{{\"customer\":{customer},\"orders\":[");
    println!("  {}", orders.join(",\n  "));
    println!("]}}");
    Ok(())
}
