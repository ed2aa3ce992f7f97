//! Bad input that is not a value: relations whose metadata does not fit their key
//! (reachable through the public `Relation` trait and `load_edge`), and tables whose
//! column types or NULLs do not fit the model. Each is a typed error naming the
//! culprit, raised before any statement where it can be, on every loading path.

mod common;
mod fixtures;

use common::shop::{Stock, Warehouse};
use matrx_orm::prelude::*;
use matrx_orm::{Error, ModelMeta, Related, RelationKind, RelationMeta};

// ----- relations whose metadata does not fit ----------------------------------------------

fn warehouse_meta() -> &'static ModelMeta {
    Warehouse::META
}

/// Declares a `Stock -> Warehouse` relation by hand, with `META` and `Key` chosen by
/// the caller (what a hand-written or out-of-date `Relation` impl can do).
macro_rules! hand_relation {
    ($name:ident, $key:ty, $meta:expr, $source_key:expr) => {
        #[derive(Clone, Copy, Debug)]
        struct $name;
        impl Relation for $name {
            type Source = Stock;
            type Target = Warehouse;
            type Key = $key;
            type Slot = One<Warehouse>;
            const META: &'static RelationMeta = &$meta;
            fn slot(source: &Stock) -> &One<Warehouse> {
                &source.warehouse
            }
            fn slot_mut(source: &mut Stock) -> &mut One<Warehouse> {
                &mut source.warehouse
            }
            fn source_key(source: &Stock) -> Option<$key> {
                #[allow(clippy::redundant_closure_call)]
                Some(($source_key)(source))
            }
            fn target_key(_: &Warehouse) -> Option<$key> {
                None
            }
        }
    };
}

// Two key columns declared, a one-column key type.
hand_relation!(
    OneForTwo,
    String,
    RelationMeta {
        name: "one_for_two",
        kind: RelationKind::BelongsTo,
        target: warehouse_meta,
        source_columns: &["region", "code"],
        target_fields: &[],
        through: None,
    },
    |s: &Stock| s.region.clone()
);

// A target field the target model does not have.
hand_relation!(
    NoSuchField,
    (String, i32),
    RelationMeta {
        name: "no_such_field",
        kind: RelationKind::BelongsTo,
        target: warehouse_meta,
        source_columns: &["region", "code"],
        target_fields: &["region", "nope"],
        through: None,
    },
    |s: &Stock| (s.region.clone(), s.code)
);

// Many-to-many without a junction table.
hand_relation!(
    NoJunction,
    i64,
    RelationMeta {
        name: "no_junction",
        kind: RelationKind::ManyToMany,
        target: warehouse_meta,
        source_columns: &["product_id"],
        target_fields: &[],
        through: None,
    },
    |s: &Stock| s.product_id
);

fn invalid_naming(err: &Error, parts: &[&str]) -> bool {
    match err {
        Error::InvalidInput(msg) => parts.iter().all(|p| msg.contains(p)),
        _ => false,
    }
}

#[tokio::test]
async fn a_relation_whose_metadata_does_not_fit_its_key_is_invalid_input_before_any_query() {
    let db = fixtures::shop_db("shapes_arity").await;
    Warehouse::insert_many(&*db, &[fixtures::warehouse("eu", 1, "Paris")])
        .await
        .unwrap();
    let p = fixtures::product("p", "P", 1).insert(&*db).await.unwrap();
    let stocks = Stock::insert_many(&*db, &[fixtures::stock(p.id, "eu", 1, 5)])
        .await
        .unwrap();
    let before = db.query_count();

    // The primitive itself.
    let err = matrx_orm::load_edge::<OneForTwo>(&db.db, ["eu".to_owned()], &Related::default())
        .await
        .err()
        .unwrap();
    assert!(
        invalid_naming(
            &err,
            &["Stock.one_for_two", "2 key columns", "1 key values"]
        ),
        "{err:?}"
    );
    let err =
        matrx_orm::load_edge::<NoSuchField>(&db.db, [("eu".to_owned(), 1)], &Related::default())
            .await
            .err()
            .unwrap();
    assert!(
        invalid_naming(&err, &["no_such_field", "Warehouse", "`nope`"]),
        "{err:?}"
    );
    let err = matrx_orm::load_edge::<NoJunction>(&db.db, [1i64], &Related::default())
        .await
        .err()
        .unwrap();
    assert!(
        invalid_naming(&err, &["Stock.no_junction", "junction"]),
        "{err:?}"
    );

    // Every loading path over it: prefetch, lazy, session batch, joined.
    let err = matrx_orm::prefetch_related(&*db, &stocks, OneForTwo)
        .await
        .unwrap_err();
    assert!(invalid_naming(&err, &["one_for_two"]), "{err:?}");
    let err = stocks[0].fetch(&*db, OneForTwo).await.unwrap_err();
    assert!(invalid_naming(&err, &["one_for_two"]), "{err:?}");
    let session = db.session();
    let err = stocks[0].fetch(&session, NoSuchField).await.unwrap_err();
    assert!(invalid_naming(&err, &["`nope`"]), "{err:?}");
    assert_eq!(db.query_count() - before, 0, "refused before any statement");
    // Joined loads build their SQL from the metadata alone (the key type is not used):
    // the two-column key joins correctly, or is refused, never misattached.
    for tree in [
        Stock::query().select_related(OneForTwo),
        Stock::query().balanced(OneForTwo),
    ] {
        match tree.all(&*db).await {
            Ok(joined) => {
                let w = joined[0].warehouse.get().unwrap();
                assert_eq!((w.region.as_str(), w.code), ("eu", 1));
            }
            Err(err) => assert!(invalid_naming(&err, &["one_for_two"]), "{err:?}"),
        }
    }
    let before = db.query_count();
    let err = Stock::query()
        .select_related(NoSuchField)
        .all(&*db)
        .await
        .unwrap_err();
    assert!(invalid_naming(&err, &["`nope`"]), "{err:?}");
    let err = Stock::query()
        .select_related(NoJunction)
        .all(&*db)
        .await
        .unwrap_err();
    assert!(invalid_naming(&err, &["no_junction"]), "{err:?}");
    assert!(
        !stocks[0].warehouse.is_loaded(),
        "nothing attached by a failed load"
    );
    assert_eq!(db.query_count() - before, 0, "refused before any statement");
}

// ----- tables that do not fit their models --------------------------------------------------

#[derive(Model, Debug, Clone)]
#[orm(table = "makers")]
pub struct Maker {
    #[orm(primary_key)]
    pub id: i64,
    /// `int4` in the table.
    pub name: String,
    #[orm(has_many(foreign_key = "maker_id"))]
    pub gadgets: Many<Gadget>,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "gadgets")]
pub struct Gadget {
    #[orm(primary_key)]
    pub id: i64,
    pub maker_id: i64,
    /// NULL in one row.
    pub label: String,
    #[orm(belongs_to(key = "maker_id"))]
    pub maker: One<Maker>,
    /// The junction's `maker_id` is `text`.
    #[orm(many_to_many(through = "gadget_makers", source = "gadget_id", target = "maker_id"))]
    pub makers: Many<Maker>,
}

fn decode_error(err: &Error, model: &str, column: &str) -> bool {
    match err {
        Error::Decode {
            model: m,
            column: c,
            ..
        } => *m == model && c == column && err.to_string().contains(model),
        _ => false,
    }
}

#[tokio::test]
async fn a_column_that_does_not_fit_its_field_is_a_decode_error_on_every_path() {
    let db = common::test_db("shapes_decode").await;
    db.batch_execute(
        "CREATE TABLE makers (id int8 PRIMARY KEY, name int4 NOT NULL); \
         CREATE TABLE gadgets (id int8 PRIMARY KEY, maker_id int8 NOT NULL, label text); \
         CREATE TABLE gadget_makers (gadget_id int8 NOT NULL, maker_id text NOT NULL); \
         INSERT INTO makers VALUES (1, 10), (2, 20); \
         INSERT INTO gadgets VALUES (1, 1, 'a'), (2, 2, 'b'), (99, 1, NULL); \
         INSERT INTO gadget_makers VALUES (1, '1'), (2, '2');",
    )
    .await
    .unwrap();
    let fine = Gadget::query()
        .filter(Gadget::ID.ne(99))
        .order_by(Gadget::ID.asc())
        .all(&*db)
        .await
        .unwrap();
    assert_eq!(fine.len(), 2);

    // The wrong type, named with both types.
    let err = Maker::query().all(&*db).await.unwrap_err();
    assert!(decode_error(&err, "Maker", "name"), "{err:?}");
    if let Error::Decode {
        rust_type, pg_type, ..
    } = &err
    {
        assert!(rust_type.contains("String"), "{rust_type}");
        assert_eq!(pg_type, "int4");
    }
    assert!(decode_error(
        &Maker::get(&*db, &1).await.unwrap_err(),
        "Maker",
        "name"
    ));
    let err = matrx_orm::prefetch_related(&*db, &fine, Gadget::MAKER)
        .await
        .unwrap_err();
    assert!(decode_error(&err, "Maker", "name"), "{err:?}");
    assert!(fine.iter().all(|g| !g.maker.is_loaded()));
    let err = fine[0].fetch(&*db, Gadget::MAKER).await.unwrap_err();
    assert!(decode_error(&err, "Maker", "name"), "{err:?}");
    let session = db.session();
    let results =
        futures_util::future::join_all(fine.iter().map(|g| g.fetch(&session, Gadget::MAKER))).await;
    for r in &results {
        assert!(
            matches!(r, Err(e) if decode_error(e, "Maker", "name")),
            "{r:?}"
        );
    }
    for strategy in ["select_related", "balanced"] {
        let q = Gadget::query().filter(Gadget::ID.ne(99));
        let q = match strategy {
            "select_related" => q.select_related(Gadget::MAKER),
            _ => q.balanced(Gadget::MAKER),
        };
        let err = q.all(&*db).await.unwrap_err();
        assert!(
            matches!(&err, Error::Decode { model: "Maker", column, .. } if column.contains("name")),
            "{strategy}: {err:?}"
        );
    }

    // A junction key column of another type than the target's key: the server refuses
    // the join (a typed error with its SQLSTATE), nothing is attached.
    let err = matrx_orm::prefetch_related(&*db, &fine, Gadget::MAKERS)
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("42883"), "{err:?}");
    assert!(err.to_string().contains("bigint = text"), "{err}");
    assert!(fine.iter().all(|g| !g.makers.is_loaded()));

    // A NULL in a non-Option field: only the row holding it fails, also in a batch.
    let err = Gadget::get(&*db, &99).await.unwrap_err();
    assert!(decode_error(&err, "Gadget", "label"), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("null"), "{err}");
    let session = db.session();
    let (ok, bad) = futures_util::join!(Gadget::get(&session, &1), Gadget::get(&session, &99));
    assert_eq!(session.query_count(), 1, "one batch");
    assert_eq!(ok.unwrap().label, "a");
    assert!(decode_error(&bad.unwrap_err(), "Gadget", "label"));
    let err = Gadget::query().all(&*db).await.unwrap_err();
    assert!(decode_error(&err, "Gadget", "label"), "{err:?}");
}
