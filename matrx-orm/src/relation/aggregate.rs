//! Aggregates of a relation for a collection already loaded: one `GROUP BY` statement
//! over the parents' keys ([`Aggregate::load`]), read back per parent ([`PerParent`]).

use std::collections::HashMap;

use postgres_types::FromSql;

use crate::base::decode::decode_column;
use crate::base::error::Result;
use crate::base::key::{dedup_keys, Key};
use crate::base::value::as_sql_refs;
use crate::executor::Executor;
use crate::relation::sql::aggregate_statement;
use crate::schema::aggregate::Aggregate;
use crate::schema::model::{Model, Relation};

/// An aggregate's value for each parent, read back with [`get`](Self::get).
pub struct PerParent<R: Relation, T> {
    values: HashMap<R::Key, T>,
}

impl<R: Relation, T: std::fmt::Debug> std::fmt::Debug for PerParent<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.values.iter()).finish()
    }
}

impl<R: Relation, T: Clone + Default> PerParent<R, T> {
    /// The value of `parent`: 0 (for a count) or `None` when it has no targets or its
    /// key is NULL.
    pub fn get(&self, parent: &R::Source) -> T {
        R::source_key(parent)
            .and_then(|key| self.values.get(&key).cloned())
            .unwrap_or_default()
    }

    /// The value of the parent with relation key `key` (its primary key, unless the
    /// relation names other columns).
    pub fn by_key(&self, key: &R::Key) -> T {
        self.values.get(key).cloned().unwrap_or_default()
    }
}

impl<R: Relation, T> Aggregate<R, T>
where
    T: for<'a> FromSql<'a> + Clone + Default + Send + Sync,
{
    /// Computes the aggregate for every parent in `parents` with one statement (none
    /// when no parent has a key), grouped by parent key.
    ///
    /// ```no_run
    /// # use matrx_orm::prelude::*;
    /// # #[derive(Model, Debug)] #[orm(table = "orders")]
    /// # pub struct Order { #[orm(primary_key)] pub id: i64, pub customer_id: i64 }
    /// # #[derive(Model, Debug)] #[orm(table = "customers")]
    /// # pub struct Customer { #[orm(primary_key)] pub id: i64,
    /// #   #[orm(has_many(foreign_key = "customer_id"))] pub orders: Many<Order> }
    /// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
    /// let customers = Customer::query().all(db).await?;
    /// let counts = Customer::ORDERS.count().load(db, &customers).await?; // 1 query
    /// for c in &customers {
    ///     println!("{}: {} orders", c.id, counts.get(c));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn load<'p, E: Executor>(
        &self,
        ex: &E,
        parents: impl IntoIterator<Item = &'p R::Source>,
    ) -> Result<PerParent<R, T>> {
        let keys = dedup_keys(parents.into_iter().filter_map(R::source_key));
        let mut values = HashMap::with_capacity(keys.len());
        if keys.is_empty() {
            return Ok(PerParent { values });
        }
        for key in &keys {
            key.validate()?;
        }
        let sql = aggregate_statement(self, R::Key::array_params(&keys), &R::Key::column_types())?;
        let rows = ex.query_read(&sql.text, &as_sql_refs(&sql.params)).await?;
        let name = <R::Source as Model>::META.name;
        for row in &rows {
            let key = R::Key::decode(row, 0, name)?;
            let value: T = decode_column(row, R::Key::ARITY, name)?;
            values.insert(key, value);
        }
        Ok(PerParent { values })
    }
}
