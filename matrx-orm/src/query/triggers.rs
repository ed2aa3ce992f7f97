//! Opt-in triggers that announce writes made outside the ORM (raw SQL, other
//! programs, migrations) the way the ORM's own writes do, so coherent shared caches
//! evict them too.

use std::collections::BTreeSet;

use crate::base::error::{Error, Result};
use crate::base::meta::{ModelMeta, RelationKind};
use crate::base::sql::{qualified, SqlBuf};
use crate::cache::coherence::{push_notify_row, push_notify_table, valid_channel};
use crate::cache::DEFAULT_CHANNEL;
use crate::schema::model::Model;

/// The triggers' name on every table.
const TRIGGER: &str = "matrx_orm_notify";
/// The `TRUNCATE` trigger's name on every table.
const TRUNCATE_TRIGGER: &str = "matrx_orm_notify_truncate";
/// The function announcing a whole table (truncates, junction tables).
const WHOLE_TABLE_FUNCTION: &str = "matrx_orm_notify_table";
/// The dollar-quote tag of function bodies (no text of a body can contain it).
const BODY: &str = "$matrx_orm$";

/// DDL for triggers announcing every write to the tables of some models, as
/// [`DbBuilder::coherent_cache`](crate::DbBuilder::coherent_cache) writes announce
/// theirs. **Opt-in**: the ORM's own writes announce themselves without triggers;
/// install these only when other programs (or raw SQL) write to cached tables.
///
/// For each model: a row trigger naming the key of every inserted, updated (old and
/// new key) or deleted row, and a `TRUNCATE` trigger naming the whole table; for each
/// junction table of its many-to-many relations, a statement trigger naming the whole
/// junction. Row triggers cost one `pg_notify` per row written (PostgreSQL folds the
/// identical notifications of one transaction); with them installed, the ORM's writes
/// are announced twice, which costs nothing but a second eviction.
///
/// The text is idempotent (`CREATE OR REPLACE FUNCTION`, `DROP TRIGGER IF EXISTS`):
/// run it in a migration.
///
/// ```
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "tags")]
/// # pub struct Tag { #[orm(primary_key)] pub id: i64, pub name: String }
/// let ddl = matrx_orm::CoherenceTriggers::new().model::<Tag>().sql()?;
/// assert!(ddl.contains(r#"CREATE TRIGGER "matrx_orm_notify" AFTER INSERT OR UPDATE OR DELETE ON "tags""#));
/// # Ok::<(), matrx_orm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CoherenceTriggers {
    channel: String,
    models: Vec<Trigger>,
}

#[derive(Debug, Clone)]
struct Trigger {
    meta: &'static ModelMeta,
    /// `PERFORM pg_notify(..)` for `OLD` and for `NEW`, rendered with the key type.
    body: fn(&str) -> (String, String),
}

impl Default for CoherenceTriggers {
    fn default() -> Self {
        Self::new()
    }
}

impl CoherenceTriggers {
    /// Triggers announcing on [`DEFAULT_CHANNEL`](crate::cache::DEFAULT_CHANNEL).
    pub fn new() -> Self {
        CoherenceTriggers {
            channel: DEFAULT_CHANNEL.to_owned(),
            models: Vec::new(),
        }
    }

    /// Announces on `channel` (the one given to
    /// [`DbBuilder::coherence_channel`](crate::DbBuilder::coherence_channel)).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Adds the triggers of `M`'s table and of its junction tables.
    pub fn model<M: Model>(mut self) -> Self {
        self.models.push(Trigger {
            meta: M::META,
            body: row_notifies::<M>,
        });
        self
    }

    /// The DDL text; an error for a channel that is not a plain name, or a table whose
    /// trigger function name would be longer than PostgreSQL keeps.
    pub fn sql(&self) -> Result<String> {
        if !valid_channel(&self.channel) {
            return Err(Error::InvalidInput(format!(
                "invalid cache invalidation channel {:?}: use ASCII letters, digits and _",
                self.channel
            )));
        }
        let mut out = String::new();
        let mut schemas = BTreeSet::new();
        let mut junctions = BTreeSet::new();
        for trigger in &self.models {
            let meta = trigger.meta;
            schemas.insert(meta.schema);
            for relation in meta.relations {
                if let (RelationKind::ManyToMany, Some(t)) = (relation.kind, &relation.through) {
                    let schema = t.schema.or(meta.schema);
                    schemas.insert(schema);
                    junctions.insert((schema, t.table));
                }
            }
        }
        for schema in &schemas {
            self.whole_table_function(&mut out, *schema)?;
        }
        for trigger in &self.models {
            self.row_trigger(&mut out, trigger)?;
        }
        for (schema, table) in junctions {
            let target = qualified(schema, table);
            let function = qualified(schema, WHOLE_TABLE_FUNCTION);
            drop_and_create(
                &mut out,
                TRIGGER,
                &target,
                "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE",
                "STATEMENT",
                &function,
            );
        }
        Ok(out)
    }

    fn whole_table_function(&self, out: &mut String, schema: Option<&str>) -> Result<()> {
        let mut body = SqlBuf::new();
        push_notify_table(&mut body, &self.channel);
        push_function(out, &qualified(schema, WHOLE_TABLE_FUNCTION), &body.text)
    }

    fn row_trigger(&self, out: &mut String, trigger: &Trigger) -> Result<()> {
        let meta = trigger.meta;
        let name = format!("matrx_orm_notify_{}", meta.table);
        if name.len() > 63 {
            return Err(Error::InvalidInput(format!(
                "{}: the trigger function name {name:?} is longer than PostgreSQL's 63 bytes",
                meta.name
            )));
        }
        let function = qualified(meta.schema, &name);
        let (old, new) = (trigger.body)(&self.channel);
        let body = format!(
            "IF TG_OP IN ('UPDATE', 'DELETE') THEN {old} END IF; \
             IF TG_OP IN ('INSERT', 'UPDATE') THEN {new} END IF;"
        );
        push_function(out, &function, &body)?;
        let table = qualified(meta.schema, meta.table);
        drop_and_create(
            out,
            TRIGGER,
            &table,
            "AFTER INSERT OR UPDATE OR DELETE",
            "ROW",
            &function,
        );
        let whole = qualified(meta.schema, WHOLE_TABLE_FUNCTION);
        drop_and_create(
            out,
            TRUNCATE_TRIGGER,
            &table,
            "AFTER TRUNCATE",
            "STATEMENT",
            &whole,
        );
        Ok(())
    }
}

/// The notify statements of a row trigger of `M`, for `OLD` and `NEW`.
fn row_notifies<M: Model>(channel: &str) -> (String, String) {
    let keys: Vec<&str> = M::META.primary_key_columns().map(|c| c.name).collect();
    let render = |row: &str| {
        let mut sql = SqlBuf::new();
        push_notify_row::<M::Key>(&mut sql, channel, row, &keys);
        sql.text
    };
    (render("OLD"), render("NEW"))
}

fn push_function(out: &mut String, function: &str, body: &str) -> Result<()> {
    if body.contains(BODY) {
        return Err(Error::InvalidInput(format!(
            "{function}: a column name contains {BODY}, the quote of the trigger body"
        )));
    }
    out.push_str(&format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {BODY}\n\
         BEGIN {body} RETURN NULL; END {BODY};\n"
    ));
    Ok(())
}

fn drop_and_create(
    out: &mut String,
    name: &str,
    table: &str,
    events: &str,
    each: &str,
    function: &str,
) {
    let name = crate::base::sql::quote_ident(name);
    out.push_str(&format!(
        "DROP TRIGGER IF EXISTS {name} ON {table};\n\
         CREATE TRIGGER {name} {events} ON {table} FOR EACH {each} EXECUTE FUNCTION {function}();\n"
    ));
}
