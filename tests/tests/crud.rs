//! CRUD against a real server, for single and composite primary keys, with the
//! number of statements each call costs.

mod common;
mod fixtures;
mod reliability;

use chrono::{DateTime, Utc};
use common::count_queries;
use common::shop::*;
use fixtures::*;
use matrx_orm::prelude::*;
use matrx_orm::Error;

/// A model with database-filled columns of both kinds: an identity key and defaults.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "notes")]
pub struct Note {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub body: String,
    #[orm(default = "now()")]
    pub created_at: DateTime<Utc>,
    #[orm(default = "'draft'")]
    pub status: String,
    pub pinned: Option<bool>,
}

fn note(body: &str) -> Note {
    Note {
        id: 0,
        body: body.into(),
        created_at: ts(0),
        status: "ignored".into(),
        pinned: None,
    }
}

#[tokio::test]
async fn create_returns_the_stored_row_with_defaults_filled() {
    let db = common::test_db("crud_create").await;
    matrx_orm::ddl::create_tables(&*db, &[Note::META])
        .await
        .unwrap();
    let before = Utc::now();
    let (first, n) = count_queries(&db, async {
        Note::create()
            .set(Note::BODY, "hello")
            .exec(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 1, "create is one INSERT ... RETURNING");
    assert!(first.id >= 1);
    assert_eq!(first.body, "hello");
    assert_eq!(first.status, "draft", "DDL default filled by the database");
    assert_eq!(first.pinned, None);
    let skew = chrono::Duration::seconds(60);
    assert!(first.created_at > before - skew && first.created_at < Utc::now() + skew);

    let second = Note::create()
        .set(Note::BODY, "second")
        .set(Note::STATUS, "published")
        .set(Note::PINNED, true)
        .exec(&*db)
        .await
        .unwrap();
    assert!(second.id > first.id, "identity increments");
    assert_eq!(
        second.status, "published",
        "an explicitly set default column is written"
    );
    assert_eq!(second.pinned, Some(true));

    // Setting a column twice keeps the last value; set_null writes NULL.
    let third = Note::create()
        .set(Note::BODY, "a")
        .set(Note::BODY, "b")
        .set(Note::PINNED, true)
        .set_null(Note::PINNED)
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(third.body, "b");
    assert_eq!(third.pinned, None);

    // The shop's identity key too.
    let shop = fixtures::shop_db("crud_create_shop").await;
    let ann = Customer::create()
        .set(Customer::NAME, "Ann")
        .set(Customer::EMAIL, "ann@example.com")
        .set(Customer::CREATED_AT, ts(5))
        .exec(&*shop)
        .await
        .unwrap();
    assert!(ann.id >= 1);
    assert_eq!(ann.created_at, ts(5));
    assert!(!ann.orders.is_loaded() && !ann.referrer.is_loaded());
    assert_eq!(Customer::get(&*shop, &ann.id).await.unwrap(), ann);
}

#[tokio::test]
async fn insert_leaves_auto_columns_to_the_database() {
    let db = common::test_db("crud_insert").await;
    matrx_orm::ddl::create_tables(&*db, &[Note::META])
        .await
        .unwrap();
    let draft = Note {
        id: 999,
        ..note("body")
    };
    let (stored, n) = count_queries(&db, async { draft.insert(&*db).await.unwrap() }).await;
    assert_eq!(n, 1);
    assert_ne!(stored.id, 999, "auto id left to the identity");
    assert_eq!(
        stored.status, "draft",
        "a default column is auto: the field value is not written"
    );
    assert_ne!(stored.created_at, ts(0));
    assert_eq!(stored.body, "body");
    assert_eq!(Note::get(&*db, &stored.id).await.unwrap(), stored);

    // include_auto writes them.
    let explicit = Note {
        id: 42,
        status: "kept".into(),
        created_at: ts(7),
        ..note("x")
    };
    let rows = Note::insert_rows(std::slice::from_ref(&explicit))
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(rows, vec![explicit]);
}

#[tokio::test]
async fn insert_many_is_one_statement_returning_rows_in_order() {
    let db = shop_db("crud_insert_many").await;
    let input = customers(500);
    let (stored, n) = count_queries(&db, async {
        Customer::insert_many(&*db, &input).await.unwrap()
    })
    .await;
    assert_eq!(n, 1, "500 rows, one INSERT");
    assert_eq!(stored.len(), 500);
    for (i, (s, c)) in stored.iter().zip(&input).enumerate() {
        assert_eq!(s.email, c.email, "row {i} out of order");
        assert_eq!(s.created_at, c.created_at);
    }
    assert!(
        stored.windows(2).all(|w| w[0].id < w[1].id),
        "ids follow input order"
    );
    assert_eq!(count_rows(&*db, "customers").await, 500);

    let (empty, n) = count_queries(&db, async {
        Customer::insert_many(&*db, &[]).await.unwrap()
    })
    .await;
    assert!(empty.is_empty());
    assert_eq!(n, 0, "an empty insert_many sends nothing");

    // Composite keys.
    let whs: Vec<Warehouse> = (1..=3)
        .map(|c| warehouse("af", c, &format!("wh{c}")))
        .collect();
    let (stored, n) = count_queries(&db, async {
        Warehouse::insert_many(&*db, &whs).await.unwrap()
    })
    .await;
    assert_eq!(n, 1);
    assert_eq!(stored, whs);
}

/// 100,000 rows (400,000 values, six times PostgreSQL's parameter limit) are one
/// statement: one array per column.
#[tokio::test]
async fn insert_many_of_100_000_rows_is_one_statement() {
    let db = shop_db("crud_insert_100k").await;
    let root = customer("root", "root@x").insert(&*db).await.unwrap();
    let mut input = customers(100_000);
    for (i, c) in input.iter_mut().enumerate() {
        c.referred_by = (i % 3 == 0).then_some(root.id); // NULL in two rows of three
    }
    let (stored, n) = count_queries(&db, async {
        Customer::insert_many(&*db, &input).await.unwrap()
    })
    .await;
    assert_eq!(n, 1, "100,000 rows, one INSERT");
    assert_eq!(stored.len(), 100_000);
    for (i, (s, c)) in stored.iter().zip(&input).enumerate() {
        assert_eq!(
            (&s.name, &s.email, s.created_at, s.referred_by),
            (&c.name, &c.email, c.created_at, c.referred_by),
            "row {i}: returned in input order"
        );
    }
    assert!(
        stored.windows(2).all(|w| w[0].id < w[1].id),
        "the auto ids are filled, in input order"
    );
    let read: Vec<Customer> = Customer::query()
        .filter(Customer::ID.ne(root.id))
        .order_by(Customer::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(read, stored, "what was returned is what was stored");

    // Explicit ids (include_auto) through arrays too.
    let mut explicit = customers(20);
    for (i, c) in explicit.iter_mut().enumerate() {
        c.id = 1_000_000 + i as i64;
        c.email = format!("explicit{i}@x");
    }
    let (stored, n) = count_queries(&db, async {
        Customer::insert_rows(&explicit)
            .include_auto()
            .exec(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!((n, stored), (1, explicit));
}

/// From 10 rows an insert is one text for any row count, one array per column; fewer
/// rows, and a model with an array column, use a `VALUES` list.
#[tokio::test]
async fn insert_statement_text_by_row_count() {
    #[derive(Model, Debug, Clone)]
    #[orm(table = "customers")]
    pub struct WithArray {
        #[orm(primary_key, auto)]
        pub id: i64,
        pub name: String,
        pub email: String,
        pub created_at: DateTime<Utc>,
        #[orm(sql_type = "bigint[]")]
        pub referred_by: Option<i64>,
    }
    let db = shop_db("crud_insert_text").await;
    let log = reliability::SqlLog::default();
    let _guard = log.install();
    let input = customers(1_000);
    let mut texts = Vec::new();
    for (from, to) in [(0, 9), (9, 19), (19, 1_000)] {
        Customer::insert_many(&*db, &input[from..to]).await.unwrap();
        texts.extend(log.take());
    }
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[0].contains(" VALUES ($1, $2, $3, $4), "),
        "{}",
        texts[0]
    );
    assert_eq!(texts[1], texts[2], "10 and 981 rows: the same text");
    assert!(
        texts[1].contains(
            "SELECT unnest($1::text[]), unnest($2::text[]), \
             unnest($3::timestamptz[]), unnest($4::bigint[]) RETURNING"
        ),
        "{}",
        texts[1]
    );
    // One row as arrays (forced): the same text, the row as stored.
    let one = customer("one", "one@x");
    let stored = Customer::insert_rows(std::slice::from_ref(&one))
        .arrays_only()
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(log.take(), [texts[1].clone()]);
    assert!(stored.len() == 1 && stored[0].id > 0 && stored[0].email == one.email);

    // An array-typed column (declared so here): VALUES lists whatever the count.
    let rows: Vec<WithArray> = (0..20)
        .map(|i| WithArray {
            id: 0,
            name: format!("a{i}"),
            email: format!("a{i}@x"),
            created_at: ts(0),
            referred_by: None,
        })
        .collect();
    WithArray::insert_many(&*db, &rows).await.unwrap();
    let texts = log.take();
    assert!(
        texts.len() == 1 && texts[0].contains(" VALUES ") && !texts[0].contains("unnest"),
        "{texts:#?}"
    );
}

/// The array path and the `VALUES` path give the same rows, the same table, and the
/// same errors, for plain inserts and both `ON CONFLICT` forms, on one- and
/// three-column conflict targets, with conflicts inside the batch itself.
#[tokio::test]
async fn insert_paths_agree_on_conflicts() {
    async fn run(db: &Db, values_only: bool) -> Vec<String> {
        let mut log = Vec::new();
        let path = |rows| {
            let insert = Customer::insert_rows(rows);
            if values_only {
                insert.values_only()
            } else {
                insert
            }
        };
        let first = customers(3_000);
        let stored = path(&first).exec(db).await.unwrap();
        log.push(format!(
            "{:?}",
            stored
                .iter()
                .map(|c| (&c.email, c.id > 0))
                .collect::<Vec<_>>()
        ));
        let mut batch = customers(6_000); // the first 3,000 conflict
        for c in &mut batch {
            c.name = format!("new {}", c.name);
            c.created_at = ts(7);
        }
        let skipped = path(&batch)
            .on_conflict_do_nothing(&[Customer::EMAIL.into()])
            .exec(db)
            .await
            .unwrap();
        log.push(format!(
            "{:?}",
            skipped.iter().map(|c| &c.email).collect::<Vec<_>>()
        ));
        let none = path(&batch)
            .on_conflict_do_nothing(&[])
            .exec(db)
            .await
            .unwrap();
        log.push(format!("{}", none.len()));
        let updated = path(&batch)
            .on_conflict_update(&[Customer::EMAIL.into()], &[Customer::NAME.into()])
            .exec(db)
            .await
            .unwrap();
        log.push(format!(
            "{:?}",
            updated
                .iter()
                .map(|c| (&c.email, &c.name, c.created_at))
                .collect::<Vec<_>>()
        ));
        let all = path(&batch[..10])
            .on_conflict_update(&[Customer::EMAIL.into()], &[])
            .exec(db)
            .await
            .unwrap();
        log.push(format!(
            "{:?}",
            all.iter().map(|c| (&c.email, &c.name)).collect::<Vec<_>>()
        ));
        // A row proposed twice in one statement.
        let mut twice = batch[..20].to_vec();
        twice.push(batch[0].clone());
        let err = path(&twice)
            .on_conflict_update(&[Customer::EMAIL.into()], &[])
            .exec(db)
            .await
            .unwrap_err();
        log.push(format!("{:?}", err.sqlstate()));
        let err = path(&twice).exec(db).await.unwrap_err();
        log.push(format!("{:?}", err.sqlstate()));
        // Composite targets.
        let whs: Vec<Warehouse> = (0..2_000)
            .map(|c| warehouse("af", c, &format!("w{c}")))
            .collect();
        Warehouse::insert_rows(&whs[..1_000])
            .exec(db)
            .await
            .unwrap();
        let renamed: Vec<Warehouse> = whs
            .iter()
            .map(|w| warehouse(&w.region, w.code, &format!("{}!", w.name)))
            .collect();
        let wh_insert = Warehouse::insert_rows(&renamed);
        let wh_insert = if values_only {
            wh_insert.values_only()
        } else {
            wh_insert
        };
        let rows = wh_insert
            .on_conflict_update(
                &[Warehouse::REGION.into(), Warehouse::CODE.into()],
                &[Warehouse::NAME.into()],
            )
            .exec(db)
            .await
            .unwrap();
        log.push(format!("{rows:?}"));
        let read = Customer::query()
            .order_by(Customer::EMAIL.asc())
            .all(db)
            .await
            .unwrap();
        log.push(format!(
            "{:?}",
            read.iter()
                .map(|c| (&c.email, &c.name, c.created_at))
                .collect::<Vec<_>>()
        ));
        log
    }
    let unnest = shop_db("crud_paths_unnest").await;
    let values = shop_db("crud_paths_values").await;
    let a = run(&unnest, false).await;
    let b = run(&values, true).await;
    assert_eq!(a.len(), b.len());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!(
            a == b,
            "step {i} differs:\n unnest: {:.300}\n values: {:.300}",
            a,
            b
        );
    }
    assert!(
        a[1].contains("c3000@example.com") && !a[1].contains("c2999@"),
        "{:.200}",
        a[1]
    );
    assert_eq!(a[2], "0");
}

#[tokio::test]
async fn insert_rows_include_auto_keeps_explicit_ids() {
    let db = shop_db("crud_include_auto").await;
    let mut rows = customers(3);
    for (i, c) in rows.iter_mut().enumerate() {
        c.id = 1000 + i as i64;
    }
    let (stored, n) = count_queries(&db, async {
        Customer::insert_rows(&rows)
            .include_auto()
            .exec(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 1);
    assert_eq!(stored, rows);
    assert_eq!(
        Customer::get(&*db, &1001).await.unwrap().email,
        "c0001@example.com"
    );
    // A self-reference to an explicit id.
    let mut referred = customer("Ref", "ref@example.com");
    referred.referred_by = Some(1000);
    let referred = referred.insert(&*db).await.unwrap();
    assert_eq!(referred.referred_by, Some(1000));
}

#[tokio::test]
async fn get_and_get_or_none_with_single_and_composite_keys() {
    let db = shop_db("crud_get").await;
    let ann = customer("Ann", "ann@example.com")
        .insert(&*db)
        .await
        .unwrap();
    Warehouse::insert_many(
        &*db,
        &[
            warehouse("af", 1, "Lagos"),
            warehouse("af", 2, "Accra"),
            warehouse("eu", 1, "Oslo"),
        ],
    )
    .await
    .unwrap();
    let p = product("sku-1", "Pen", 150).insert(&*db).await.unwrap();
    Stock::insert_many(&*db, &[stock(p.id, "af", 1, 5), stock(p.id, "eu", 1, 7)])
        .await
        .unwrap();

    let (got, n) = count_queries(&db, async { Customer::get(&*db, &ann.id).await.unwrap() }).await;
    assert_eq!((got, n), (ann.clone(), 1));
    let (missing, n) = count_queries(&db, async { Customer::get(&*db, &(ann.id + 1)).await }).await;
    assert!(
        matches!(missing, Err(Error::NotFound { model: "Customer" })),
        "{missing:?}"
    );
    assert_eq!(n, 1);
    assert_eq!(
        Customer::get_or_none(&*db, &(ann.id + 1)).await.unwrap(),
        None
    );
    assert_eq!(
        Customer::get_or_none(&*db, &ann.id).await.unwrap(),
        Some(ann)
    );

    let (lagos, n) = count_queries(&db, async {
        Warehouse::get(&*db, &("af".to_string(), 1)).await.unwrap()
    })
    .await;
    assert_eq!(n, 1);
    assert_eq!(lagos.name, "Lagos");
    assert_eq!(
        Warehouse::get(&*db, &("eu".to_string(), 1))
            .await
            .unwrap()
            .name,
        "Oslo"
    );
    assert!(matches!(
        Warehouse::get(&*db, &("eu".to_string(), 2)).await,
        Err(Error::NotFound { model: "Warehouse" })
    ));
    assert_eq!(
        Warehouse::get_or_none(&*db, &("xx".to_string(), 1))
            .await
            .unwrap(),
        None
    );

    let s = Stock::get(&*db, &(p.id, "eu".to_string(), 1))
        .await
        .unwrap();
    assert_eq!(s.qty, 7);
    assert_eq!(s.key(), (p.id, "eu".to_string(), 1));
    assert_eq!(
        Stock::get_or_none(&*db, &(p.id, "af".to_string(), 2))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn query_terminals_filter_order_and_page() {
    let db = shop_db("crud_query").await;
    let stored = Customer::insert_many(&*db, &customers(10)).await.unwrap();
    let ids: Vec<i64> = stored.iter().map(|c| c.id).collect();

    let (all, n) = count_queries(&db, async { Customer::query().all(&*db).await.unwrap() }).await;
    assert_eq!((all.len(), n), (10, 1));

    let (desc, n) = count_queries(&db, async {
        Customer::query()
            .order_by(Customer::ID.desc())
            .limit(3)
            .offset(2)
            .all(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 1);
    assert_eq!(
        desc.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ids[7], ids[6], ids[5]]
    );

    let filtered = Customer::query()
        .filter(Customer::ID.gt(ids[2]))
        .filter(Customer::ID.lte(ids[6]))
        .exclude(Customer::NAME.eq("c0004"))
        .order_by(Customer::NAME.asc())
        .all(&*db)
        .await
        .unwrap();
    let names: Vec<&str> = filtered.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["c0003", "c0005", "c0006"]);
    let via_model = Customer::filter(Customer::NAME.eq("c0009"))
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(via_model.len(), 1);

    // first: by the ordering, else by primary key; one query; None when empty.
    let (first, n) =
        count_queries(&db, async { Customer::query().first(&*db).await.unwrap() }).await;
    assert_eq!((first.unwrap().id, n), (ids[0], 1));
    let last = Customer::query()
        .order_by(Customer::CREATED_AT.desc())
        .first(&*db)
        .await
        .unwrap();
    assert_eq!(last.unwrap().id, ids[9]);
    let none = Customer::query()
        .filter(Customer::ID.lt(0))
        .first(&*db)
        .await
        .unwrap();
    assert!(none.is_none());

    // one / one_or_none.
    let (one, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::NAME.eq("c0002"))
            .one(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!((one.id, n), (ids[2], 1));
    let (many, n) = count_queries(&db, async { Customer::query().one(&*db).await }).await;
    assert!(
        matches!(
            many,
            Err(Error::MultipleRows {
                model: "Customer",
                count: 2
            })
        ),
        "{many:?}"
    );
    assert_eq!(n, 1);
    let zero = Customer::query()
        .filter(Customer::NAME.eq("nobody"))
        .one(&*db)
        .await;
    assert!(matches!(zero, Err(Error::NotFound { model: "Customer" })));
    assert!(Customer::query()
        .filter(Customer::NAME.eq("nobody"))
        .one_or_none(&*db)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        Customer::query()
            .filter(Customer::NAME.eq("c0001"))
            .one_or_none(&*db)
            .await
            .unwrap()
            .map(|c| c.id),
        Some(ids[1])
    );
    assert!(matches!(
        Customer::query().one_or_none(&*db).await,
        Err(Error::MultipleRows { .. })
    ));

    // count / exists.
    let (count, n) =
        count_queries(&db, async { Customer::query().count(&*db).await.unwrap() }).await;
    assert_eq!((count, n), (10, 1));
    assert_eq!(
        Customer::query()
            .filter(Customer::ID.gte(ids[8]))
            .count(&*db)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        Customer::query().limit(4).count(&*db).await.unwrap(),
        4,
        "count honours limit"
    );
    assert_eq!(
        Customer::query().offset(7).count(&*db).await.unwrap(),
        3,
        "and offset"
    );
    let (exists, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::NAME.eq("c0003"))
            .exists(&*db)
            .await
            .unwrap()
    })
    .await;
    assert!(exists);
    assert_eq!(n, 1);
    assert!(!Customer::query()
        .filter(Customer::NAME.eq("zzz"))
        .exists(&*db)
        .await
        .unwrap());

    // A builder is reusable and cloneable.
    let q = Customer::query().filter(Customer::ID.lt(ids[3]));
    assert_eq!(q.count(&*db).await.unwrap(), 3);
    assert_eq!(q.clone().all(&*db).await.unwrap().len(), 3);
    assert_eq!(q.clone().offset(100).all(&*db).await.unwrap().len(), 0);
    assert_eq!(q.limit(0).all(&*db).await.unwrap().len(), 0);
}

#[tokio::test]
async fn query_on_composite_keys_orders_by_the_whole_key() {
    let db = shop_db("crud_query_composite").await;
    let mut whs = vec![
        warehouse("eu", 2, "b"),
        warehouse("af", 3, "c"),
        warehouse("eu", 1, "d"),
        warehouse("af", 1, "e"),
    ];
    Warehouse::insert_many(&*db, &whs).await.unwrap();
    let first = Warehouse::query().first(&*db).await.unwrap().unwrap();
    assert_eq!(
        first.key(),
        ("af".to_string(), 1),
        "first() orders by (region, code)"
    );
    whs.sort_by(|a, b| (&a.region, a.code).cmp(&(&b.region, b.code)));
    let ordered = Warehouse::query()
        .order_by(Warehouse::REGION.asc())
        .order_by(Warehouse::CODE.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(ordered, whs);
    let eu = Warehouse::query()
        .filter(Warehouse::REGION.eq("eu"))
        .order_by(Warehouse::CODE.desc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(eu.iter().map(|w| w.code).collect::<Vec<_>>(), vec![2, 1]);
}

#[tokio::test]
async fn instance_update_writes_and_refreshes() {
    let db = shop_db("crud_instance_update").await;
    let mut ann = customer("Ann", "ann@example.com")
        .insert(&*db)
        .await
        .unwrap();
    let original_id = ann.id;
    ann.name = "Ann B.".into();
    ann.referred_by = Some(ann.id);
    let ((), n) = count_queries(&db, async { ann.update(&*db).await.unwrap() }).await;
    assert_eq!(n, 1, "one UPDATE ... RETURNING");
    assert_eq!(ann.id, original_id);
    let stored = Customer::get(&*db, &ann.id).await.unwrap();
    assert_eq!(stored.name, "Ann B.");
    assert_eq!(stored.referred_by, Some(ann.id));
    assert_eq!(stored, ann);

    // The instance is refreshed from the stored row (here a trigger changes it).
    db.batch_execute(
        "CREATE FUNCTION upper_name() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$; \
         CREATE TRIGGER upper_name BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION upper_name()",
    )
    .await
    .unwrap();
    ann.name = "shouty".into();
    ann.update(&*db).await.unwrap();
    assert_eq!(
        ann.name, "SHOUTY",
        "update refreshes the instance from RETURNING"
    );

    // Composite key.
    let mut wh = warehouse("af", 1, "Lagos").insert(&*db).await.unwrap();
    warehouse("af", 2, "Accra").insert(&*db).await.unwrap();
    wh.name = "Lagos Island".into();
    wh.update(&*db).await.unwrap();
    assert_eq!(
        Warehouse::get(&*db, &("af".into(), 1)).await.unwrap().name,
        "Lagos Island"
    );
    assert_eq!(
        Warehouse::get(&*db, &("af".into(), 2)).await.unwrap().name,
        "Accra",
        "only the keyed row"
    );

    // A row that is gone.
    let mut ghost = warehouse("zz", 9, "ghost");
    let err = ghost.update(&*db).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { model: "Warehouse" }),
        "{err:?}"
    );
    assert_eq!(
        ghost.name, "ghost",
        "a failed update leaves the instance alone"
    );
}

#[tokio::test]
async fn update_by_filter_returns_the_touched_rows() {
    let db = shop_db("crud_update_filter").await;
    let c = customer("Ann", "ann@example.com")
        .insert(&*db)
        .await
        .unwrap();
    let orders = Order::insert_many(
        &*db,
        &[
            order(c.id, "paid", 100),
            order(c.id, "paid", 200),
            order(c.id, "new", 300),
        ],
    )
    .await
    .unwrap();
    let (touched, n) = count_queries(&db, async {
        Order::query()
            .filter(Order::STATUS.eq("paid"))
            .update()
            .set(Order::STATUS, "shipped")
            .exec(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 1);
    let mut touched_ids: Vec<i64> = touched.iter().map(|o| o.id).collect();
    touched_ids.sort();
    assert_eq!(touched_ids, vec![orders[0].id, orders[1].id]);
    assert!(touched.iter().all(|o| o.status == "shipped"));
    assert_eq!(Order::get(&*db, &orders[2].id).await.unwrap().status, "new");

    // Several columns at once; no match touches nothing.
    let both = Order::query()
        .filter(Order::ID.eq(orders[2].id))
        .update()
        .set(Order::STATUS, "paid")
        .set(Order::TOTAL_CENTS, 301i64)
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(
        (both[0].status.as_str(), both[0].total_cents),
        ("paid", 301)
    );
    let none = Order::query()
        .filter(Order::STATUS.eq("nope"))
        .update()
        .set(Order::STATUS, "x")
        .exec(&*db)
        .await
        .unwrap();
    assert!(none.is_empty());

    // set_null.
    let mut referred = customer("Bob", "bob@example.com");
    referred.referred_by = Some(c.id);
    let referred = referred.insert(&*db).await.unwrap();
    let cleared = Customer::query()
        .filter(Customer::REFERRED_BY.is_not_null())
        .update()
        .set_null(Customer::REFERRED_BY)
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].id, referred.id);
    assert_eq!(
        Customer::get(&*db, &referred.id).await.unwrap().referred_by,
        None
    );

    // Composite keys.
    let p = product("sku", "Pen", 1).insert(&*db).await.unwrap();
    Warehouse::insert_many(&*db, &[warehouse("af", 1, "a"), warehouse("eu", 1, "b")])
        .await
        .unwrap();
    Stock::insert_many(&*db, &[stock(p.id, "af", 1, 1), stock(p.id, "eu", 1, 1)])
        .await
        .unwrap();
    let bumped = Stock::query()
        .filter(Stock::REGION.eq("eu"))
        .update()
        .set(Stock::QTY, 50)
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(bumped.len(), 1);
    assert_eq!(
        Stock::get(&*db, &(p.id, "eu".into(), 1)).await.unwrap().qty,
        50
    );
    assert_eq!(
        Stock::get(&*db, &(p.id, "af".into(), 1)).await.unwrap().qty,
        1
    );

    // Refused before anything is sent.
    let (err, n) = count_queries(&db, async { Order::query().update().exec(&*db).await }).await;
    assert!(
        matches!(err, Err(Error::InvalidInput(ref m)) if m.contains("sets no column")),
        "{err:?}"
    );
    assert_eq!(n, 0);
    let (err, n) = count_queries(&db, async {
        Order::query()
            .limit(1)
            .update()
            .set(Order::STATUS, "x")
            .exec(&*db)
            .await
    })
    .await;
    assert!(matches!(err, Err(Error::InvalidInput(_))), "{err:?}");
    assert_eq!(n, 0);
    assert_eq!(
        Order::query()
            .filter(Order::STATUS.eq("x"))
            .count(&*db)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn instance_delete_then_not_found() {
    let db = shop_db("crud_instance_delete").await;
    let stored = Customer::insert_many(&*db, &customers(2)).await.unwrap();
    let ((), n) = count_queries(&db, async { stored[0].delete(&*db).await.unwrap() }).await;
    assert_eq!(n, 1);
    assert!(Customer::get_or_none(&*db, &stored[0].id)
        .await
        .unwrap()
        .is_none());
    assert!(
        Customer::get_or_none(&*db, &stored[1].id)
            .await
            .unwrap()
            .is_some(),
        "only that row"
    );
    let again = stored[0].delete(&*db).await;
    assert!(
        matches!(again, Err(Error::NotFound { model: "Customer" })),
        "{again:?}"
    );

    let whs = Warehouse::insert_many(&*db, &[warehouse("af", 1, "a"), warehouse("af", 2, "b")])
        .await
        .unwrap();
    whs[1].delete(&*db).await.unwrap();
    assert!(matches!(
        whs[1].delete(&*db).await,
        Err(Error::NotFound { model: "Warehouse" })
    ));
    assert_eq!(
        Warehouse::query().all(&*db).await.unwrap(),
        vec![whs[0].clone()]
    );
}

#[tokio::test]
async fn delete_by_filter_returns_the_deleted_rows() {
    let db = shop_db("crud_delete_filter").await;
    let stored = Customer::insert_many(&*db, &customers(6)).await.unwrap();
    let (deleted, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::ID.is_in([stored[1].id, stored[3].id]))
            .delete(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 1);
    let mut deleted_ids: Vec<i64> = deleted.iter().map(|c| c.id).collect();
    deleted_ids.sort();
    assert_eq!(deleted_ids, vec![stored[1].id, stored[3].id]);
    assert_eq!(
        deleted.iter().find(|c| c.id == stored[1].id).unwrap(),
        &stored[1],
        "rows as they were"
    );
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 4);
    assert!(Customer::query()
        .filter(Customer::ID.lt(0))
        .delete(&*db)
        .await
        .unwrap()
        .is_empty());

    let (err, n) = count_queries(&db, async {
        Customer::query()
            .order_by(Customer::ID.asc())
            .delete(&*db)
            .await
    })
    .await;
    assert!(matches!(err, Err(Error::InvalidInput(_))), "{err:?}");
    assert_eq!(n, 0, "refused before sending");
    assert!(matches!(
        Customer::query().limit(1).delete(&*db).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 4);

    // Composite keys, and an unfiltered delete removes everything.
    Warehouse::insert_many(
        &*db,
        &[
            warehouse("af", 1, "a"),
            warehouse("af", 2, "b"),
            warehouse("eu", 1, "c"),
        ],
    )
    .await
    .unwrap();
    let af = Warehouse::query()
        .filter(Warehouse::REGION.eq("af") & Warehouse::CODE.eq(2))
        .delete(&*db)
        .await
        .unwrap();
    assert_eq!(af, vec![warehouse("af", 2, "b")]);
    let rest = Warehouse::query().delete(&*db).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(count_rows(&*db, "warehouses").await, 0);
}

#[tokio::test]
async fn upsert_inserts_then_updates_the_conflicting_row() {
    let db = shop_db("crud_upsert").await;
    let ann = customer("Ann", "ann@example.com");
    let (first, n) = count_queries(&db, async {
        ann.upsert(&*db, &[Customer::EMAIL.into()]).await.unwrap()
    })
    .await;
    assert_eq!(n, 1);
    let again = Customer {
        name: "Ann Renamed".into(),
        created_at: ts(99),
        ..ann.clone()
    };
    let second = again.upsert(&*db, &[Customer::EMAIL.into()]).await.unwrap();
    assert_eq!(second.id, first.id, "same row");
    assert_eq!(second.name, "Ann Renamed", "non-target columns updated");
    assert_eq!(second.created_at, ts(99));
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 1);

    // Every written column is in the target: the row still comes back.
    let t1 = Tag {
        id: 0,
        name: "gift".into(),
    }
    .upsert(&*db, &[Tag::NAME.into()])
    .await
    .unwrap();
    let t2 = Tag {
        id: 0,
        name: "gift".into(),
    }
    .upsert(&*db, &[Tag::NAME.into()])
    .await
    .unwrap();
    assert_eq!(t1, t2);
    assert_eq!(count_rows(&*db, "tags").await, 1);

    // Composite key as the target.
    let w = warehouse("af", 1, "Lagos")
        .upsert(&*db, &[Warehouse::REGION.into(), Warehouse::CODE.into()])
        .await
        .unwrap();
    assert_eq!(w.name, "Lagos");
    let w = warehouse("af", 1, "Lagos 2")
        .upsert(&*db, &[Warehouse::REGION.into(), Warehouse::CODE.into()])
        .await
        .unwrap();
    assert_eq!(w.name, "Lagos 2");
    assert_eq!(count_rows(&*db, "warehouses").await, 1);

    // An upsert needs a target: refused without a statement.
    let (err, n) = count_queries(&db, async { ann.upsert(&*db, &[]).await }).await;
    assert!(matches!(err, Err(Error::InvalidInput(_))), "{err:?}");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn insert_rows_on_conflict_do_nothing_and_update() {
    let db = shop_db("crud_on_conflict").await;
    let existing = Customer::insert_many(&*db, &customers(2)).await.unwrap();
    let mut batch = customers(4); // c0000 and c0001 conflict
    for c in &mut batch {
        c.name = format!("new {}", c.name);
        c.created_at = ts(500);
    }
    let (skipped, n) = count_queries(&db, async {
        Customer::insert_rows(&batch)
            .on_conflict_do_nothing(&[Customer::EMAIL.into()])
            .exec(&*db)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(n, 1);
    let emails: Vec<&str> = skipped.iter().map(|c| c.email.as_str()).collect();
    assert_eq!(
        emails,
        ["c0002@example.com", "c0003@example.com"],
        "skipped rows are not returned"
    );
    assert_eq!(
        Customer::get(&*db, &existing[0].id).await.unwrap().name,
        "c0000",
        "untouched"
    );

    // Any conflict (empty target).
    let none = Customer::insert_rows(&batch)
        .on_conflict_do_nothing(&[])
        .exec(&*db)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 4);

    // DO UPDATE of chosen columns only.
    let updated = Customer::insert_rows(&batch)
        .on_conflict_update(&[Customer::EMAIL.into()], &[Customer::NAME.into()])
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(updated.len(), 4);
    assert_eq!(updated[0].id, existing[0].id);
    assert_eq!(updated[0].name, "new c0000");
    assert_eq!(
        updated[0].created_at, existing[0].created_at,
        "created_at is not in the update list"
    );
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 4);

    // Composite target.
    Warehouse::insert_many(&*db, &[warehouse("af", 1, "a")])
        .await
        .unwrap();
    let rows = Warehouse::insert_rows(&[warehouse("af", 1, "A"), warehouse("af", 2, "B")])
        .on_conflict_update(
            &[Warehouse::REGION.into(), Warehouse::CODE.into()],
            &[Warehouse::NAME.into()],
        )
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(rows, vec![warehouse("af", 1, "A"), warehouse("af", 2, "B")]);
    let p = product("s", "p", 1).insert(&*db).await.unwrap();
    Stock::insert_many(&*db, &[stock(p.id, "af", 1, 1)])
        .await
        .unwrap();
    let s = Stock::insert_rows(&[stock(p.id, "af", 1, 9), stock(p.id, "af", 2, 3)])
        .on_conflict_do_nothing(&[
            Stock::PRODUCT_ID.into(),
            Stock::REGION.into(),
            Stock::CODE.into(),
        ])
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(s, vec![stock(p.id, "af", 2, 3)]);
    assert_eq!(
        Stock::get(&*db, &(p.id, "af".into(), 1)).await.unwrap().qty,
        1
    );
}

#[tokio::test]
async fn raw_sql_is_decoded_by_column_name() {
    let db = shop_db("crud_raw").await;
    let stored = Customer::insert_many(&*db, &customers(3)).await.unwrap();
    let (rows, n) = count_queries(&db, async {
        Customer::raw(
            &*db,
            "SELECT referred_by, 'extra' AS extra, created_at, email, name, id FROM customers \
             WHERE email LIKE $1 AND id <> $2 ORDER BY id",
            &[&"c000%", &stored[1].id],
        )
        .await
        .unwrap()
    })
    .await;
    assert_eq!(n, 1);
    assert_eq!(rows, vec![stored[0].clone(), stored[2].clone()]);
    assert!(!rows[0].orders.is_loaded());

    Warehouse::insert_many(&*db, &[warehouse("af", 1, "Lagos")])
        .await
        .unwrap();
    let whs = Warehouse::raw(
        &*db,
        "SELECT 'renamed ' || name AS name, code, region FROM warehouses",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(whs, vec![warehouse("af", 1, "renamed Lagos")]);

    // Raw runs on any executor, and a raw write with RETURNING decodes too.
    let mut tx = db.begin().await.unwrap();
    let renamed = Customer::raw(
        &tx,
        "UPDATE customers SET name = $1 WHERE id = $2 RETURNING *",
        &[&"Zed", &stored[0].id],
    )
    .await
    .unwrap();
    assert_eq!(renamed[0].name, "Zed");
    tx.savepoint().await.unwrap().commit().await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        Customer::get(&*db, &stored[0].id).await.unwrap().name,
        "Zed"
    );
}

/// `one()` and `first()` must not widen a limit the caller set: the query's own
/// result set is what they judge.
#[tokio::test]
async fn one_and_first_respect_the_callers_limit() {
    let db = shop_db("crud_one_limit").await;
    let stored = Customer::insert_many(&*db, &customers(3)).await.unwrap();
    let q = Customer::query().order_by(Customer::ID.asc());
    assert_eq!(q.clone().limit(1).all(&*db).await.unwrap().len(), 1);
    let one = q.clone().limit(1).one(&*db).await;
    assert_eq!(
        one.unwrap().id,
        stored[0].id,
        "limit(1) leaves exactly one row"
    );
    let one = q.clone().offset(2).one(&*db).await;
    assert_eq!(
        one.unwrap().id,
        stored[2].id,
        "offset(2) leaves exactly one row"
    );
    assert!(
        q.clone().limit(0).first(&*db).await.unwrap().is_none(),
        "limit(0) leaves no row"
    );
    assert!(matches!(
        q.clone().limit(0).one(&*db).await,
        Err(Error::NotFound { .. })
    ));
}

/// A model whose only column is its database-filled key.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "tickets")]
pub struct Ticket {
    #[orm(primary_key, auto)]
    pub id: i64,
}

#[tokio::test]
async fn models_with_only_key_columns() {
    let db = common::test_db("crud_only_keys").await;
    matrx_orm::ddl::create_tables(&*db, &[Ticket::META])
        .await
        .unwrap();
    let t1 = Ticket { id: 0 }.insert(&*db).await.unwrap();
    let t2 = Ticket::create().exec(&*db).await.unwrap();
    assert!(t2.id > t1.id, "DEFAULT VALUES");
    let (err, n) = count_queries(&db, async {
        Ticket::insert_many(&*db, &[Ticket { id: 0 }, Ticket { id: 0 }]).await
    })
    .await;
    assert!(matches!(err, Err(Error::InvalidInput(_))), "{err:?}");
    assert_eq!(n, 0);
    let many = Ticket::insert_rows(&[Ticket { id: 10 }, Ticket { id: 11 }])
        .include_auto()
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(many, vec![Ticket { id: 10 }, Ticket { id: 11 }]);
    let mut t = t1.clone();
    let (err, n) = count_queries(&db, async { t.update(&*db).await }).await;
    assert!(
        matches!(err, Err(Error::InvalidInput(_))),
        "nothing to update: {err:?}"
    );
    assert_eq!(n, 0);
    assert_eq!(Ticket::query().count(&*db).await.unwrap(), 4);
}

#[tokio::test]
async fn conflicts_the_server_refuses() {
    let db = shop_db("crud_bad_conflicts").await;
    // A target that is no unique constraint.
    let err = customer("Ann", "a@x")
        .upsert(&*db, &[Customer::NAME.into()])
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("42P10"), "{err}");
    // One statement cannot update the same row twice.
    let err = Customer::insert_rows(&[customer("A", "same@x"), customer("B", "same@x")])
        .on_conflict_update(&[Customer::EMAIL.into()], &[])
        .exec(&*db)
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("21000"), "{err}");
    assert_eq!(Customer::query().count(&*db).await.unwrap(), 0);
}

/// `Create::set` on a column set before replaces the value; `Update::set` should
/// behave the same instead of sending `SET a = $1, a = $2`, which the server refuses.
#[tokio::test]
async fn setting_a_column_twice_in_an_update_keeps_the_last_value() {
    let db = shop_db("crud_update_set_twice").await;
    let c = customer("Ann", "ann@x").insert(&*db).await.unwrap();
    let created = Customer::create()
        .set(Customer::NAME, "first")
        .set(Customer::NAME, "second")
        .set(Customer::EMAIL, "b@x")
        .set(Customer::CREATED_AT, ts(0))
        .exec(&*db)
        .await
        .unwrap();
    assert_eq!(created.name, "second");
    let updated = Customer::query()
        .filter(Customer::ID.eq(c.id))
        .update()
        .set(Customer::NAME, "first")
        .set(Customer::NAME, "second")
        .exec(&*db)
        .await;
    assert_eq!(updated.unwrap()[0].name, "second");
}
