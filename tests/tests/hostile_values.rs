//! Hostile strings in every value position: filters of every operator, `is_in` lists,
//! LIKE patterns, inserts, updates and upserts, primary keys, relation keys (FK, IFK,
//! M2M, composite), many-to-many writes, customised relation edges, joined loads,
//! session batches and raw SQL parameters.
//!
//! Each value either round-trips or is refused with a typed error, and no value ever
//! appears in the text of any statement: a `tracing` subscriber records the SQL of
//! every statement the library sends, and every hostile value carries a marker that
//! must never be found there.

mod common;
mod fixtures;
mod reliability;

use std::collections::BTreeSet;

use common::shop::{Product, Stock, Warehouse};
use common::TestDb;
use matrx_orm::prelude::*;
use matrx_orm::Error;
use reliability::{assert_no_value_in_sql, hostile, SqlLog};

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "authors")]
pub struct Author {
    #[orm(primary_key)]
    pub handle: String,
    pub bio: String,
    pub nick: Option<String>,
    #[orm(has_many(foreign_key = "author"))]
    pub posts: Many<Post>,
    #[orm(many_to_many(
        through = "author_topics",
        source = "author_handle",
        target = "topic_slug"
    ))]
    pub topics: Many<Topic>,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "posts")]
pub struct Post {
    #[orm(primary_key, auto)]
    pub id: i64,
    pub author: String,
    pub title: String,
    #[orm(belongs_to(key = "author"))]
    pub by: One<Author>,
}

#[derive(Model, Debug, Clone, PartialEq, serde::Serialize)]
#[orm(table = "topics")]
pub struct Topic {
    #[orm(primary_key)]
    pub slug: String,
    pub label: String,
}

fn author(handle: &str, bio: &str, nick: Option<&str>) -> Author {
    Author {
        handle: handle.to_owned(),
        bio: bio.to_owned(),
        nick: nick.map(str::to_owned),
        posts: Default::default(),
        topics: Default::default(),
    }
}

fn post(author: &str, title: &str) -> Post {
    Post {
        id: 0,
        author: author.to_owned(),
        title: title.to_owned(),
        by: Default::default(),
    }
}

/// A schema with authors (handle = bio = hostile value i, nick = value i+1 or NULL),
/// two posts per author, topics keyed by hostile slugs and two topics per author.
async fn seeded(prefix: &str) -> (TestDb, Vec<String>) {
    let tdb = fixtures::shop_db(prefix).await;
    matrx_orm::ddl::create_tables(&*tdb, &[Author::META, Post::META, Topic::META])
        .await
        .unwrap();
    let h = hostile();
    let n = h.len();
    let authors: Vec<Author> = (0..n)
        .map(|i| {
            let nick = (i % 3 != 0).then(|| h[(i + 1) % n].as_str());
            author(&h[i], &h[i], nick)
        })
        .collect();
    Author::insert_many(&*tdb, &authors).await.unwrap();
    let posts: Vec<Post> = (0..n)
        .flat_map(|i| [post(&h[i], &h[(i + 2) % n]), post(&h[i], &h[(i + 5) % n])])
        .collect();
    Post::insert_many(&*tdb, &posts).await.unwrap();
    let topics: Vec<Topic> = h
        .iter()
        .map(|s| Topic {
            slug: s.clone(),
            label: s.clone(),
        })
        .collect();
    Topic::insert_many(&*tdb, &topics).await.unwrap();
    (tdb, h)
}

/// The number of authors matching an SQL condition on `bio` with `$1` bound to `v`,
/// counted by hand-written SQL: the truth a filter is compared with.
async fn truth(db: &Db, condition: &str, v: &str) -> Result<i64, Error> {
    let sql = format!("SELECT count(*) FROM authors WHERE {condition}");
    Ok(db.query_sql(&sql, &[&v]).await?[0].get(0))
}

/// Both succeed with the same count, or both fail with the same SQLSTATE (a LIKE
/// pattern ending in a backslash is refused by the server either way).
fn same(orm: Result<u64, Error>, truth: Result<i64, Error>, what: &str) {
    match (orm, truth) {
        (Ok(a), Ok(b)) => assert_eq!(a as i64, b, "{what}"),
        (Err(a), Err(b)) => {
            assert_eq!(a.sqlstate(), b.sqlstate(), "{what}: {a:?} vs {b:?}");
            assert!(
                a.sqlstate().is_some_and(|c| c.starts_with("22")),
                "{what}: refused as a data error, not a syntax error: {a:?}"
            );
        }
        (a, b) => panic!("{what}: the ORM said {a:?}, hand-written SQL said {b:?}"),
    }
}

#[tokio::test]
async fn hostile_values_in_every_filter_operator() {
    let (tdb, h) = seeded("hostile_filters").await;
    let db = &tdb.db;
    let log = SqlLog::default();
    let _guard = log.install();
    let n = h.len() as u64;

    for (i, v) in h.iter().enumerate() {
        let one = Author::query()
            .filter(Author::BIO.eq(v.as_str()))
            .one(db)
            .await
            .unwrap();
        assert_eq!(&one.handle, v);
        assert_eq!(
            Author::query()
                .filter(Author::BIO.ne(v.as_str()))
                .count(db)
                .await
                .unwrap(),
            n - 1
        );
        for (op, filter, cond) in [
            ("gt", Author::BIO.gt(v.as_str()), "bio > $1"),
            ("gte", Author::BIO.gte(v.as_str()), "bio >= $1"),
            ("lt", Author::BIO.lt(v.as_str()), "bio < $1"),
            ("lte", Author::BIO.lte(v.as_str()), "bio <= $1"),
            ("like", Author::BIO.like(v.as_str()), "bio LIKE $1"),
            ("ilike", Author::BIO.ilike(v.as_str()), "bio ILIKE $1"),
            ("nick eq", Author::NICK.eq(v.as_str()), "nick = $1"),
        ] {
            let orm = Author::query().filter(filter).count(db).await;
            same(orm, truth(db, cond, v).await, &format!("{op} {i}"));
        }
        let w = &h[(i + 7) % h.len()];
        let (lo, hi) = if v <= w { (v, w) } else { (w, v) };
        let orm = Author::query()
            .filter(Author::BIO.between(lo.as_str(), hi.as_str()))
            .count(db)
            .await
            .unwrap();
        let want: i64 = db
            .query_sql(
                "SELECT count(*) FROM authors WHERE bio BETWEEN $1 AND $2",
                &[lo, hi],
            )
            .await
            .unwrap()[0]
            .get(0);
        assert_eq!(orm as i64, want, "between {i}");
        // Combinations: and / or / not / exclude / all / any.
        let combo = (Author::BIO.eq(v.as_str()) | Author::HANDLE.eq(w.as_str()))
            & !Author::NICK.eq(w.as_str());
        let got = Author::query().filter(combo).count(db).await.unwrap();
        assert!((1..=2).contains(&got), "combo {i}: {got}");
        let excluded = Author::query()
            .exclude(Author::NICK.eq(v.as_str()))
            .count(db)
            .await
            .unwrap();
        let nick_is_v = Author::query()
            .filter(Author::NICK.eq(v.as_str()))
            .count(db)
            .await
            .unwrap();
        assert_eq!(excluded + nick_is_v, n, "exclude keeps NULL nicks");
        let any = Filter::any([Author::BIO.eq(v.as_str()), Author::BIO.eq(w.as_str())]);
        assert_eq!(Author::query().filter(any).count(db).await.unwrap(), 2);
        let all = Filter::all([Author::BIO.eq(v.as_str()), Author::HANDLE.eq(v.as_str())]);
        assert!(Author::query().filter(all).exists(db).await.unwrap());
        assert!(Author::query()
            .filter(Author::BIO.eq(v.as_str()))
            .order_by(Author::NICK.desc().nulls_last())
            .first(db)
            .await
            .unwrap()
            .is_some());
    }

    // Lists: every value, a subset, an empty list, and NOT IN.
    assert_eq!(
        Author::query()
            .filter(Author::BIO.is_in(h.clone()))
            .count(db)
            .await
            .unwrap(),
        n
    );
    let odd: Vec<String> = h.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(
        Author::query()
            .filter(Author::HANDLE.not_in(odd.clone()))
            .count(db)
            .await
            .unwrap(),
        n - odd.len() as u64
    );
    assert_eq!(
        Author::query()
            .filter(Author::BIO.is_in(Vec::<String>::new()))
            .count(db)
            .await
            .unwrap(),
        0
    );
    let nulls = Author::query()
        .filter(Author::NICK.is_null())
        .count(db)
        .await
        .unwrap();
    assert_eq!(nulls, h.len().div_ceil(3) as u64);

    // Update and delete by a hostile filter.
    let updated = Author::query()
        .filter(Author::HANDLE.is_in(odd.clone()))
        .update()
        .set(Author::NICK, h[0].as_str())
        .exec(db)
        .await
        .unwrap();
    assert_eq!(updated.len(), odd.len());
    assert!(updated
        .iter()
        .all(|a| a.nick.as_deref() == Some(h[0].as_str())));
    let deleted = Author::query()
        .filter(Author::BIO.eq(h[1].as_str()))
        .delete(db)
        .await;
    // Posts reference the author: refused by the foreign key, with its name.
    assert!(
        matches!(&deleted, Err(Error::ForeignKeyViolation { constraint, .. }) if constraint.contains("posts")),
        "{deleted:?}"
    );

    let statements = log.take();
    assert_no_value_in_sql(&statements);
    eprintln!("{} statements checked", statements.len());
}

#[tokio::test]
async fn hostile_values_in_every_write() {
    let tdb = fixtures::shop_db("hostile_writes").await;
    matrx_orm::ddl::create_tables(&*tdb, &[Author::META, Post::META, Topic::META])
        .await
        .unwrap();
    let db = &tdb.db;
    let h = hostile();
    let log = SqlLog::default();
    let _guard = log.install();

    // insert, insert_many, create.
    let first = author(&h[0], &h[1], Some(&h[2])).insert(db).await.unwrap();
    assert_eq!(first, author(&h[0], &h[1], Some(&h[2])));
    let many: Vec<Author> = h[1..]
        .iter()
        .enumerate()
        .map(|(i, v)| author(v, &h[i % h.len()], (i % 2 == 0).then_some(v.as_str())))
        .collect();
    let stored = Author::insert_many(db, &many).await.unwrap();
    assert_eq!(stored, many);
    for v in &h {
        let t = Topic::create()
            .set(Topic::SLUG, v.as_str())
            .set(Topic::LABEL, v.as_str())
            .exec(db)
            .await
            .unwrap();
        assert_eq!((&t.slug, &t.label), (v, v));
    }

    // Gets by hostile primary key, on the pool and batched in a session.
    for v in &h {
        assert_eq!(&Author::get(db, v).await.unwrap().handle, v);
    }
    let session = db.session();
    let got = futures_util::future::try_join_all(h.iter().map(|v| Author::get(&session, v)))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 1, "one batch");
    assert!(got.iter().zip(&h).all(|(a, v)| &a.handle == v));
    let missing = format!("{}-missing", h[5]);
    assert!(Author::get_or_none(db, &missing).await.unwrap().is_none());

    // Instance update, update by filter, upserts, ON CONFLICT DO NOTHING.
    for (i, v) in h.iter().enumerate() {
        let mut a = Author::get(db, v).await.unwrap();
        a.bio = h[(i + 3) % h.len()].clone();
        a.nick = None;
        a.update(db).await.unwrap();
        assert_eq!(Author::get(db, v).await.unwrap().bio, h[(i + 3) % h.len()]);
        let up = author(v, &format!("{v}{v}"), Some(v))
            .upsert(db, &[Author::HANDLE.into()])
            .await
            .unwrap();
        assert_eq!(up, author(v, &format!("{v}{v}"), Some(v)));
    }
    let skipped = Author::insert_rows(&[author(&h[3], "ignored", None)])
        .on_conflict_do_nothing(&[Author::HANDLE.into()])
        .exec(db)
        .await
        .unwrap();
    assert!(skipped.is_empty());
    let refreshed = Author::insert_rows(&[author(&h[4], &h[9], None)])
        .on_conflict_update(&[Author::HANDLE.into()], &[Author::BIO.into()])
        .exec(db)
        .await
        .unwrap();
    assert_eq!(refreshed[0].bio, h[9]);
    assert_eq!(
        refreshed[0].nick.as_deref(),
        Some(h[4].as_str()),
        "nick kept"
    );
    let renamed = Author::query()
        .filter(Author::HANDLE.eq(h[6].as_str()))
        .update()
        .set(Author::BIO, h[7].as_str())
        .set_null(Author::NICK)
        .exec(db)
        .await
        .unwrap();
    assert_eq!(
        (renamed[0].bio.as_str(), renamed[0].nick.as_ref()),
        (h[7].as_str(), None)
    );

    // Delete an instance with a hostile key; the others are untouched.
    Author::get(db, &h[8])
        .await
        .unwrap()
        .delete(db)
        .await
        .unwrap();
    assert!(Author::get_or_none(db, &h[8]).await.unwrap().is_none());
    assert_eq!(Author::query().count(db).await.unwrap(), h.len() as u64 - 1);

    // The tables are all still there.
    let tables: i64 = db
        .query_sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(
        tables, 13,
        "9 shop tables, authors, posts, topics, author_topics"
    );
    assert_no_value_in_sql(&log.take());
}

#[tokio::test]
async fn hostile_keys_in_every_relation_path() {
    let (tdb, h) = seeded("hostile_relations").await;
    let db = &tdb.db;
    let n = h.len();
    let log = SqlLog::default();
    let _guard = log.install();

    // M2M writes keyed by hostile strings on both sides.
    for (i, v) in h.iter().enumerate() {
        let a = &mut Author::get(db, v).await.unwrap();
        let added = a
            .m2m_add(
                db,
                Author::TOPICS,
                [h[i].clone(), h[(i + 1) % n].clone(), h[(i + 2) % n].clone()],
            )
            .await
            .unwrap();
        assert_eq!(added, 3);
        let removed = a
            .m2m_remove(db, Author::TOPICS, [h[(i + 2) % n].clone()])
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let out = a
            .m2m_set(db, Author::TOPICS, [h[i].clone(), h[(i + 3) % n].clone()])
            .await
            .unwrap();
        assert_eq!((out.added, out.removed), (1, 1));
    }
    let expected_topics = |handle: &str| -> BTreeSet<String> {
        let i = h.iter().position(|v| v == handle).unwrap();
        [h[i].clone(), h[(i + 3) % n].clone()].into_iter().collect()
    };
    let expected_titles = |handle: &str| -> BTreeSet<String> {
        let i = h.iter().position(|v| v == handle).unwrap();
        [h[(i + 2) % n].clone(), h[(i + 5) % n].clone()]
            .into_iter()
            .collect()
    };
    let check = |a: &Author| {
        let titles: BTreeSet<String> = a.posts.iter().map(|p| p.title.clone()).collect();
        assert_eq!(titles, expected_titles(&a.handle), "{:?}", a.handle);
        assert!(a.posts.iter().all(|p| p.author == a.handle));
        let topics: BTreeSet<String> = a.topics.iter().map(|t| t.slug.clone()).collect();
        assert_eq!(topics, expected_topics(&a.handle), "{:?}", a.handle);
    };

    // Prefetch (IFK and M2M keyed by hostile handles, FK back), one query per edge.
    let before = db.query_count();
    let loaded = Author::query()
        .prefetch(Author::POSTS.with(Post::BY))
        .prefetch(Author::TOPICS)
        .all(db)
        .await
        .unwrap();
    assert_eq!(db.query_count() - before, 4);
    for a in &loaded {
        check(a);
        assert!(a
            .posts
            .iter()
            .all(|p| p.by.get().map(|b| &b.handle) == Some(&a.handle)));
    }

    // Joined and balanced loads of the same relations.
    for loaded in [
        Author::query()
            .select_related(Author::POSTS.with(Post::BY))
            .select_related(Author::TOPICS)
            .all(db)
            .await
            .unwrap(),
        Author::query()
            .balanced(Author::POSTS.with(Post::BY))
            .balanced(Author::TOPICS)
            .all(db)
            .await
            .unwrap(),
    ] {
        assert_eq!(loaded.len(), n);
        loaded.iter().for_each(check);
    }
    let posts = Post::query()
        .select_related(Post::BY.with(Author::TOPICS))
        .all(db)
        .await
        .unwrap();
    assert!(posts
        .iter()
        .all(|p| p.by.get().map(|a| &a.handle) == Some(&p.author)));

    // Customised edges whose filter values are hostile.
    for v in h.iter().step_by(5) {
        let custom = Author::query()
            .filter(Author::HANDLE.ne(v.as_str()))
            .prefetch(
                Author::POSTS
                    .filter(Post::TITLE.ne(v.as_str()))
                    .order_by(Post::TITLE.desc())
                    .limit_per_parent(1),
            )
            .prefetch(Author::TOPICS.filter(Topic::LABEL.ne(v.as_str())))
            .all(db)
            .await
            .unwrap();
        assert_eq!(custom.len(), n - 1);
        for a in &custom {
            let posts = a.posts.get().unwrap();
            assert!(posts.len() <= 1 && posts.iter().all(|p| &p.title != v));
            assert!(a.topics.iter().all(|t| &t.label != v));
        }
        let joined = Author::query()
            .filter(Author::BIO.eq(v.as_str()))
            .select_related(Author::POSTS.filter(Post::TITLE.ne(v.as_str())))
            .one(db)
            .await
            .unwrap();
        assert!(joined.posts.iter().all(|p| &p.title != v));
    }

    // Lazy loads on the pool, then batched in a session.
    for a in Author::query().all(db).await.unwrap() {
        a.fetch(db, Author::POSTS).await.unwrap();
        a.fetch(db, Author::TOPICS).await.unwrap();
        check(&a);
    }
    let session = db.session();
    let fresh = Author::query().all(&session).await.unwrap();
    let before = session.query_count();
    futures_util::future::try_join_all(fresh.iter().map(|a| async {
        let (p, t) = futures_util::join!(
            a.fetch(&session, Author::POSTS),
            a.fetch(&session, Author::TOPICS)
        );
        let posts = p?;
        t?;
        futures_util::future::try_join_all(posts.iter().map(|p| p.fetch(&session, Post::BY))).await
    }))
    .await
    .unwrap();
    assert_eq!(session.query_count() - before, 3, "one batch per edge");
    fresh.iter().for_each(check);

    // Composite keys: warehouses whose region is hostile, stock referencing them,
    // products linked to them many-to-many.
    let warehouses: Vec<Warehouse> = h
        .iter()
        .enumerate()
        .map(|(i, v)| fixtures::warehouse(v, i as i32, v))
        .collect();
    Warehouse::insert_many(db, &warehouses).await.unwrap();
    let mut p = Product::insert_many(db, &[fixtures::product(&h[0], &h[1], 1)])
        .await
        .unwrap()
        .remove(0);
    let stock: Vec<Stock> = h
        .iter()
        .enumerate()
        .map(|(i, v)| fixtures::stock(p.id, v, i as i32, i as i32))
        .collect();
    Stock::insert_many(db, &stock).await.unwrap();
    let keys: Vec<(String, i32)> = h
        .iter()
        .enumerate()
        .map(|(i, v)| (v.clone(), i as i32))
        .collect();
    let out = p
        .m2m_set(db, Product::WAREHOUSES, keys.iter().cloned().step_by(2))
        .await
        .unwrap();
    assert_eq!(out.added as usize, n.div_ceil(2));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(Warehouse::get(db, k).await.unwrap().name, h[i]);
    }
    let session = db.session();
    let got = futures_util::future::try_join_all(keys.iter().map(|k| Warehouse::get(&session, k)))
        .await
        .unwrap();
    assert_eq!(session.query_count(), 1);
    assert!(got
        .iter()
        .zip(&keys)
        .all(|(w, k)| &(w.region.clone(), w.code) == k));
    let stock = Stock::query()
        .prefetch(Stock::WAREHOUSE)
        .prefetch(Stock::PRODUCT.with(Product::WAREHOUSES))
        .all(db)
        .await
        .unwrap();
    assert_eq!(stock.len(), n);
    for s in &stock {
        let w = s.warehouse.get().unwrap();
        assert_eq!((&w.region, w.code), (&s.region, s.code));
        assert_eq!(
            s.product.get().unwrap().warehouses.get().unwrap().len(),
            n.div_ceil(2)
        );
    }
    let joined = Stock::query()
        .select_related(Stock::WAREHOUSE)
        .all(db)
        .await
        .unwrap();
    assert!(joined
        .iter()
        .all(|s| s.warehouse.get().map(|w| &w.region) == Some(&s.region)));
    let cleared = p.m2m_clear(db, Product::WAREHOUSES).await.unwrap();
    assert_eq!(cleared as usize, n.div_ceil(2));

    assert_no_value_in_sql(&log.take());
}

#[tokio::test]
async fn hostile_raw_sql_parameters_are_bound_not_spliced() {
    let (tdb, h) = seeded("hostile_raw").await;
    let db = &tdb.db;
    let log = SqlLog::default();
    let _guard = log.install();
    for v in &h {
        let rows = db.query_sql("SELECT $1::text", &[v]).await.unwrap();
        assert_eq!(&rows[0].get::<_, String>(0), v);
        let found = Author::raw(db, "SELECT * FROM authors WHERE handle = $1", &[v])
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&found[0].bio, v);
        let n = db
            .execute_sql("UPDATE posts SET title = $1 WHERE author = $1", &[v])
            .await
            .unwrap();
        assert_eq!(n, 2);
        let arr = db
            .query_sql(
                "SELECT count(*) FROM authors WHERE handle = ANY($1)",
                &[&vec![v.clone(), v.clone()]],
            )
            .await
            .unwrap();
        assert_eq!(arr[0].get::<_, i64>(0), 1);
    }
    assert_no_value_in_sql(&log.take());
}

/// U+0000 cannot be stored in PostgreSQL text: in a key it is refused with
/// `InvalidInput`, before or by the server, and nothing is written.
#[tokio::test]
async fn a_nul_byte_in_a_key_is_invalid_input_and_writes_nothing() {
    let (tdb, h) = seeded("hostile_nul_keys").await;
    let db = &tdb.db;
    let nul = format!("{}\0tail", h[0]);
    fn invalid<T>(r: &Result<T, Error>) -> bool {
        matches!(r, Err(Error::InvalidInput(_)))
    }

    assert!(invalid(&Author::get(db, &nul).await.map(drop)));
    assert!(invalid(&author(&nul, "b", None).insert(db).await.map(drop)));
    let mut a = Author::get(db, &h[0]).await.unwrap();
    assert!(invalid(&a.m2m_add(db, Author::TOPICS, [nul.clone()]).await));
    assert!(invalid(
        &a.m2m_set(db, Author::TOPICS, [h[1].clone(), nul.clone()])
            .await
            .map(drop)
    ));
    assert!(invalid(
        &Warehouse::get(db, &(nul.clone(), 1)).await.map(drop)
    ));
    assert_eq!(fixtures::count_rows(db, "author_topics").await, 0);
    assert_eq!(
        Author::query().count(db).await.unwrap(),
        h.len() as u64,
        "nothing written"
    );
}

/// In a session, gets issued together share one statement. A key the server would
/// refuse (a NUL byte in text) must fail its own caller only, not every load batched
/// with it. (Regression test: until eeb4ed5 one bad key failed the whole batch.)
#[tokio::test]
async fn a_nul_byte_key_in_a_session_batch_fails_only_its_own_caller() {
    let (tdb, h) = seeded("hostile_nul_batch").await;
    let session = tdb.db.session();
    let nul = format!("{}\0tail", h[0]);
    let (good, bad) =
        futures_util::join!(Author::get(&session, &h[1]), Author::get(&session, &nul));
    assert!(matches!(bad, Err(Error::InvalidInput(_))), "{bad:?}");
    assert!(
        good.is_ok(),
        "a valid key batched with an invalid one: {good:?}"
    );
}

/// The detector itself: a value spliced into SQL text (as a careless raw query would)
/// is caught, so the checks above are not vacuous.
#[tokio::test]
async fn the_sql_log_catches_a_spliced_value() {
    let tdb = common::test_db("hostile_detector").await;
    let log = SqlLog::default();
    let _guard = log.install();
    let spliced = format!("SELECT '{}'", reliability::MARKER);
    tdb.query_sql(&spliced, &[]).await.unwrap();
    tdb.transaction(async |tx| tx.execute_sql("SELECT 1", &[]).await)
        .await
        .unwrap();
    let statements = log.take();
    assert_eq!(statements[0], spliced, "{statements:?}");
    assert!(statements.len() >= 4 && statements.iter().any(|s| s == "SELECT 1"));
    let caught = std::panic::catch_unwind(|| assert_no_value_in_sql(&statements));
    assert!(caught.is_err());
}
