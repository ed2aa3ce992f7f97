//! A GraphQL API (`async-graphql` on axum) whose resolvers are plain per-object
//! `fetch` calls, and what each query costs: a page of orders with their customer,
//! items, the items' products and tags is 5 statements, whatever the page size.
//!
//! ```text
//! cargo run --release --example graphql            # runs a few queries, prints their statement counts
//! cargo run --release --example graphql -- serve   # serves POST /graphql on a free port until Enter
//! ```
//!
//! Each HTTP request opens a `Session` and runs the query in it ([`graphql::execute`]
//! puts it into the GraphQL context); resolvers call
//! `order.fetch(session, Order::CUSTOMER)` and the like. `async-graphql` resolves the items of a list concurrently in one task, so
//! the session batches those calls into one statement per relation edge per wave.
//! The schema and the reasoning behind `orderCount` (one statement, not one per
//! customer) are in `examples/src/graphql.rs`. Every response carries its statement
//! count in an `x-query-count` header.
//!
//! Without an argument the app is driven in-process (`tower::ServiceExt::oneshot`):
//! no port is opened, and a statement count above the stated one (plus one, for a
//! batch that split) fails the run.
//! PostgreSQL is found like the tour's (`DATABASE_URL`, else the local default, else
//! a throwaway cluster); the example works in a schema of its own, dropped at the end.

use std::process::ExitCode;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use matrx_orm::prelude::*;
use matrx_orm_examples::dataset::{Progress, Shop, Size};
use matrx_orm_examples::graphql::{self, ShopSchema};
use matrx_orm_examples::shop;
use matrx_orm_testkit::TestSchema;
use serde_json::{json, Value};
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ----- the app ------------------------------------------------------------------------

#[derive(Clone)]
struct AppState {
    db: Db,
    schema: ShopSchema,
}

fn app(db: Db) -> Router {
    let state = AppState {
        db,
        schema: graphql::schema(),
    };
    Router::new()
        .route("/graphql", post(graphql_handler))
        .with_state(state)
}

/// `POST /graphql`: one session per request; the statement count goes back in a
/// header.
async fn graphql_handler(
    State(state): State<AppState>,
    Json(request): Json<async_graphql::Request>,
) -> impl IntoResponse {
    let session = state.db.session();
    let response = graphql::execute(&state.schema, &session, request).await;
    let statements = session.query_count().to_string();
    ([("x-query-count", statements)], Json(response))
}

// ----- running it -----------------------------------------------------------------------

/// The queries the demo sends, each with the statements it must cost.
const QUERIES: &[(&str, &str, u64)] = &[
    (
        "a page of 25 orders with customer, items.product and tags",
        "{ orders(first: 25) { id status customer { name } items { quantity product { name } } tags { name } } }",
        5,
    ),
    (
        "the same for 5 orders",
        "{ orders(first: 5) { id status customer { name } items { quantity product { name } } tags { name } } }",
        5,
    ),
    (
        "the same for 100 orders",
        "{ orders(first: 100) { id status customer { name } items { quantity product { name } } tags { name } } }",
        5,
    ),
    (
        "the next page (a cursor)",
        "{ orders(first: 25, after: 25) { id status customer { name } items { quantity product { name } } tags { name } } }",
        5,
    ),
    (
        "customers with their order count",
        "{ customers(first: 25) { name orderCount } }",
        1,
    ),
    (
        "customers with their orders and order count",
        "{ customers(first: 25) { name orderCount orders { id status } } }",
        2,
    ),
    (
        "orders with their customer's order count",
        "{ orders(first: 25) { id customer { name orderCount } } }",
        3,
    ),
    (
        "orders -> customer -> orders -> tags",
        "{ orders(first: 25) { id customer { orders { id tags { name } } } } }",
        4,
    ),
];

#[tokio::main]
async fn main() -> ExitCode {
    let serve = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("serve") => true,
        Some(other) => {
            eprintln!("usage: graphql [serve]   (unknown argument {other:?})");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(serve).await;
    matrx_orm_testkit::shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nerror: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Creates a schema with the shop in it, runs the demo or the server in it, and
/// drops it whatever happened.
async fn run(serve: bool) -> Result<(), BoxError> {
    let server = matrx_orm_testkit::server().await?;
    println!("PostgreSQL {}", server.major_version());
    let schema = TestSchema::create("graphql").await?;
    let outcome = async {
        let db = Db::builder(schema.url())
            .search_path(schema.name())
            .pool_size(8)
            .connect()
            .await?;
        build_shop(&db).await?;
        if serve {
            serve_until_enter(db).await
        } else {
            demo(db).await
        }
    }
    .await;
    let dropped = schema.drop_now().await;
    outcome?;
    Ok(dropped?)
}

/// The tables and a small generated shop: 40 customers, 30 products, 200 orders.
async fn build_shop(db: &Db) -> Result<(), BoxError> {
    matrx_orm::ddl::create_tables(db, &shop::models()).await?;
    let size = Size {
        customers: 40,
        products: 30,
        orders: 200,
    };
    let data = Shop::generate(size, 2024)?;
    data.insert(
        db,
        &mut Progress::new("building the shop", data.row_count()),
    )
    .await?;
    Ok(())
}

/// Sends each query of [`QUERIES`] through the app and prints what it cost, beside
/// what the same resolvers cost in a session whose batches hold one key each (the
/// same per-object code without the batching: about one statement per `fetch`).
async fn demo(db: Db) -> Result<(), BoxError> {
    let app = app(db.clone());
    let schema = graphql::schema();
    let mut wrong = 0;
    for (i, (what, query, expected)) in QUERIES.iter().enumerate() {
        let (statements, body) = call(app.clone(), query).await?;
        if let Some(errors) = body.get("errors") {
            return Err(format!("{what}: {errors}").into());
        }
        let mut unbatched = db.session();
        unbatched.set_max_batch(1);
        let response = graphql::execute(&schema, &unbatched, *query).await;
        if let Some(error) = response.errors.first() {
            return Err(format!("{what}, unbatched: {}", error.message).into());
        }
        // A wave's batch occasionally splits in two (see the test `tests/graphql.rs`):
        // one statement more is reported, more than that fails the run.
        let mark = if statements == *expected {
            "ok".to_owned()
        } else if statements == expected + 1 {
            format!("a batch split in two this time; usually {expected}")
        } else {
            wrong += 1;
            format!("WARNING: expected {expected}")
        };
        println!(
            "\n{what}: {} ({mark}; {} with batches of one key)",
            plural(statements),
            unbatched.query_count()
        );
        println!("  {query}");
        if i == 0 {
            println!("  -> {}", first_items(&body["data"]["orders"], 2)?);
        }
        if i == 5 {
            println!("  -> {}", first_items(&body["data"]["customers"], 2)?);
        }
    }
    println!("\n(one statement per relation edge per wave, whatever the page size)");
    if wrong > 0 {
        return Err(format!("{wrong} queries cost other than stated").into());
    }
    Ok(())
}

fn plural(statements: u64) -> String {
    match statements {
        1 => "1 statement".to_owned(),
        n => format!("{n} statements"),
    }
}

/// Sends one GraphQL query to `app` in-process; returns the statement count header
/// and the JSON body.
async fn call(app: Router, query: &str) -> Result<(u64, Value), BoxError> {
    let request = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&json!({ "query": query }))?))?;
    let response = app.oneshot(request).await?;
    if response.status() != StatusCode::OK {
        return Err(format!("POST /graphql -> {}", response.status()).into());
    }
    let statements = match response.headers().get("x-query-count") {
        Some(value) => value.to_str()?.parse()?,
        None => return Err("no x-query-count header".into()),
    };
    let body = axum::body::to_bytes(response.into_body(), 1 << 24).await?;
    Ok((statements, serde_json::from_slice(&body)?))
}

/// The first `n` elements of a JSON list, one per line.
fn first_items(list: &Value, n: usize) -> Result<String, BoxError> {
    let items = list.as_array().ok_or("not a list")?;
    let shown: Vec<String> = items
        .iter()
        .take(n)
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    Ok(format!(
        "{} of {}:\n     {}",
        shown.len(),
        items.len(),
        shown.join("\n     ")
    ))
}

/// Serves the app on a free local port until Enter is pressed (or standard input
/// closes), so the schema is dropped at the end.
async fn serve_until_enter(db: Db) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("\nserving POST http://{addr}/graphql — press Enter to stop. Try:");
    println!(
        "  curl -si http://{addr}/graphql -H 'content-type: application/json' \\\n    \
         -d '{{\"query\": \"{{ orders(first: 25) {{ id customer {{ name }} items {{ quantity product {{ name }} }} tags {{ name }} }} }}\"}}'"
    );
    let enter = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    });
    axum::serve(listener, app(db))
        .with_graceful_shutdown(async {
            let _ = enter.await;
        })
        .await?;
    println!("stopped");
    Ok(())
}
