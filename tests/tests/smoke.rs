mod common;

use common::shop::*;
use common::{count_queries, test_db};
use matrx_orm::prelude::*;

#[tokio::test]
async fn create_insert_query_and_prefetch() {
    let db = test_db("smoke").await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    let ann = Customer::create()
        .set(Customer::NAME, "Ann")
        .set(Customer::EMAIL, "ann@example.com")
        .set(Customer::CREATED_AT, chrono::Utc::now())
        .exec(&*db)
        .await
        .unwrap();
    let order = Order::create()
        .set(Order::CUSTOMER_ID, ann.id)
        .set(Order::STATUS, "paid")
        .set(Order::PLACED_AT, chrono::Utc::now())
        .set(Order::TOTAL_CENTS, 100i64)
        .exec(&*db)
        .await
        .unwrap();
    let tag = Tag::create()
        .set(Tag::NAME, "gift")
        .exec(&*db)
        .await
        .unwrap();
    let mut o2 = order.clone();
    assert_eq!(o2.m2m_add(&*db, Order::TAGS, [tag.id]).await.unwrap(), 1);
    assert_eq!(o2.m2m_add(&*db, Order::TAGS, [tag.id]).await.unwrap(), 0);
    let (orders, n) = count_queries(&db, async {
        Order::query()
            .prefetch(Order::CUSTOMER)
            .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
            .prefetch(Order::TAGS)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        n, 4,
        "orders, customers, items, tags (no items: products cost nothing)"
    );
    assert_eq!(orders[0].customer.get().unwrap().email, "ann@example.com");
    assert_eq!(orders[0].tags.get().unwrap().len(), 1);
    assert_eq!(orders[0].items.get().unwrap().len(), 0);
}
