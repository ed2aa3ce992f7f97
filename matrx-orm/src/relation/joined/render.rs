//! Rendering a joined statement: the select list and joins of every joined edge (a
//! `LEFT JOIN` for to-one edges, a `LEFT JOIN LATERAL` aggregate for to-many ones),
//! the root statement they hang off, and the statement of a batched edge with joined
//! children. Identifiers always quoted, values always bound.

use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::meta::{ModelMeta, RelationKind};
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::Param;
use crate::relation::batch::sorted_in_memory;
use crate::relation::joined::plan::{BatchedEdge, JoinedEdge, Parents, Plan};
use crate::relation::joined::policy::{
    parent_keys_as_array, to_many_shape, AggregateEncoding, ToManyShape,
};
use crate::relation::sql::edge_statement;
use crate::schema::correlated::Correlated;
use crate::schema::criteria::Criteria;
use crate::schema::model::{Model, Relation};
use crate::schema::related::Related;

/// The column of a to-one edge's lateral that counts the rows its key matched.
pub(super) const MATCHES: &str = "__n";

/// Alias of the derived table holding a batched edge's rows (see [`BatchedEdge`]).
const BASE: &str = "b";

/// The name of the common table expression holding the root rows when to-many edges
/// are aggregated per set of parents (see [`Parents`]).
pub(super) const ROOT_ROWS: &str = "__root";

/// How the root rows' common table expression is evaluated, for a root `paged` or not.
///
/// - Paged (a limit or an offset): `MATERIALIZED`, evaluated once, so every aggregate
///   reads exactly the rows of the page. Evaluated once per reference, a page whose
///   order has ties (or no order) could be a different set of rows each time, and a
///   parent would miss its children.
/// - Unpaged: `NOT MATERIALIZED`, inlined. The same filter in the same snapshot is
///   the same rows every time, and inlined the planner estimates from the table's
///   statistics: materialized, its guesses pushed the estimated cost of all 20,000
///   orders (W2) over the JIT threshold, 4x slower (docs/BENCHMARKS.md).
pub(super) fn root_rows(paged: bool) -> &'static str {
    if paged {
        " AS MATERIALIZED"
    } else {
        " AS NOT MATERIALIZED"
    }
}

/// Opens the statement with the root rows as a common table expression, up to its
/// closing parenthesis: `WITH "__root" AS [NOT] MATERIALIZED (SELECT <M's columns>
/// FROM <M> AS "t" WHERE .. [ORDER BY .. LIMIT ..]` (see [`root_rows`]).
pub(super) fn push_root_rows<M: Model>(sql: &mut SqlBuf, rows: &Criteria<M>) -> Result<()> {
    let paged = rows.is_paged();
    sql.push("WITH ")
        .ident(ROOT_ROWS)
        .push(root_rows(paged))
        .push(" (SELECT ")
        .columns(ROOT, M::META)
        .push(" FROM ")
        .table_as(M::META, ROOT)
        .push(" WHERE ");
    rows.render_where(ROOT, sql);
    if paged {
        rows.render_order(ROOT, sql);
        rows.render_paging(sql)?;
    }
    Ok(())
}

/// The root statement: `M`'s columns and the joined edges' (see the module docs).
pub(super) fn root_statement<M: Model>(
    rows: &Criteria<M>,
    plan: &Plan<M>,
    enc: AggregateEncoding,
) -> Result<SqlBuf> {
    rows.check()?;
    let mut selects: Vec<String> = Vec::with_capacity(M::META.columns.len());
    for col in M::META.columns {
        let mut s = SqlBuf::new();
        s.column(ROOT, col.name);
        selects.push(s.text);
    }
    plan.selects(enc, &mut selects);
    let mut sql = SqlBuf::new();
    if plan.reads_parent_rows() {
        // The root rows as a common table expression the to-many aggregates read their
        // parents' keys from (see `root_rows`).
        push_root_rows(&mut sql, rows)?;
        // The select list holds no placeholder: everything bound is in the CTE before
        // it or in the joins after it, in text order.
        sql.push(") SELECT ")
            .push(&selects.join(", "))
            .push(" FROM ")
            .ident(ROOT_ROWS)
            .push(" AS ")
            .ident(ROOT);
        let mut from = SqlBuf::new();
        from.ident(ROOT_ROWS);
        let parents = Parents {
            from: from.text,
            as_array: parent_keys_as_array(rows.is_paged()),
        };
        plan.joins(enc, ROOT, false, Some(&parents), &mut sql)?;
        rows.render_order(ROOT, &mut sql);
        return Ok(sql);
    }
    // The select list holds no placeholder: everything bound comes after it, in text order.
    sql.push("SELECT ").push(&selects.join(", ")).push(" FROM ");
    if rows.is_paged() {
        sql.push("(SELECT ")
            .columns(ROOT, M::META)
            .push(" FROM ")
            .table_as(M::META, ROOT)
            .push(" WHERE ");
        rows.render_where(ROOT, &mut sql);
        rows.render_order(ROOT, &mut sql);
        rows.render_paging(&mut sql)?;
        sql.push(") AS ").ident(ROOT);
        plan.joins(enc, ROOT, false, None, &mut sql)?;
    } else {
        sql.table_as(M::META, ROOT);
        plan.joins(enc, ROOT, false, None, &mut sql)?;
        sql.push(" WHERE ");
        rows.render_where(ROOT, &mut sql);
    }
    rows.render_order(ROOT, &mut sql);
    Ok(sql)
}

impl<S: Model> Plan<S> {
    /// Appends the select-list entries of the joined edges.
    pub(crate) fn selects(&self, enc: AggregateEncoding, out: &mut Vec<String>) {
        for edge in self.joined.iter().filter(|e| !e.is_branch()) {
            edge.selects(enc, out);
        }
    }

    /// Appends the joins of the joined edges onto `parent` (an alias). `nested`: inside
    /// a `LATERAL` aggregate. `parents`: the set of parent rows, when the to-many
    /// edges may aggregate once for all of them (see [`Parents`]).
    pub(crate) fn joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        parents: Option<&Parents>,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        for edge in self.joined.iter().filter(|e| !e.is_branch()) {
            edge.joins(enc, parent, nested, parents, sql)?;
        }
        Ok(())
    }

    /// Whether an edge of this level, or a to-one chain below it, is a to-many edge
    /// that takes the set-oriented shape (so the statement names its parents' rows).
    pub(crate) fn reads_parent_rows(&self) -> bool {
        self.joined
            .iter()
            .any(|e| !e.is_branch() && e.reads_parent_rows())
    }
}

impl<R: Relation> JoinedEdge<R> {
    pub(super) fn selects(&self, enc: AggregateEncoding, out: &mut Vec<String>) {
        if R::META.kind.is_to_one() {
            self.row_selects(enc, out);
        } else {
            let mut sql = SqlBuf::new();
            sql.column(&format!("l{}", self.id), "v");
            out.push(sql.text);
        }
    }

    pub(super) fn joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        parents: Option<&Parents>,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        if R::META.kind.is_to_one() {
            return self.to_one_joins(enc, parent, nested, parents, sql);
        }
        match (parents, to_many_shape(&self.related)) {
            (Some(parents), ToManyShape::Grouped) => self.grouped_joins(enc, parent, parents, sql),
            _ => self.to_many_joins(enc, parent, sql),
        }
    }

    /// Whether this edge, or one below it through to-one edges, takes the grouped
    /// to-many shape when its parents' rows are known.
    pub(super) fn reads_parent_rows(&self) -> bool {
        if R::META.kind.is_to_one() {
            self.plan.reads_parent_rows()
        } else {
            to_many_shape(&self.related) == ToManyShape::Grouped
        }
    }

    /// This edge's target rows for the parent rows `parents`, as the parents of its
    /// own edges: `(SELECT <target columns> FROM <target> WHERE <keys in parents>)`.
    /// Its filter is left out (the set may be larger, never smaller).
    fn rows_for(&self, parents: &Parents) -> Result<Parents> {
        let set = format!("s{}", self.id);
        let junction = format!("sj{}", self.id);
        let correlated = Self::correlated()?;
        let mut sql = SqlBuf::new();
        sql.push("(SELECT ")
            .columns(&set, Self::target())
            .push(" FROM ");
        correlated.push_from(&mut sql, &set, &junction);
        sql.push(" WHERE ");
        correlated.push_in_parents(
            &mut sql,
            &set,
            &junction,
            &parents.from,
            &format!("p{}", self.id),
            parents.as_array,
        );
        sql.push(")");
        // Rows below a page's rows are as few as the page makes them: arrays again.
        Ok(Parents {
            from: sql.text,
            as_array: parents.as_array,
        })
    }

    /// The parents of this edge's own edges, when they read them.
    fn child_parents(&self, parents: Option<&Parents>) -> Result<Option<Parents>> {
        match parents {
            Some(parents) if self.plan.reads_parent_rows() => self.rows_for(parents).map(Some),
            _ => Ok(None),
        }
    }

    /// The target's columns and this edge's own joined edges, qualified.
    fn row_selects(&self, enc: AggregateEncoding, out: &mut Vec<String>) {
        let alias = self.alias();
        for col in Self::target().columns {
            let mut sql = SqlBuf::new();
            sql.column(&alias, col.name);
            out.push(sql.text);
        }
        if self.counts_matches() {
            let mut sql = SqlBuf::new();
            sql.column(&alias, MATCHES);
            out.push(sql.text);
        }
        self.plan.selects(enc, out);
    }

    /// How this edge's rows are reached from a parent row.
    pub(super) fn correlated() -> Result<Correlated> {
        Correlated::new(<R::Source as Model>::META, R::META)
    }

    /// The `FROM` item: the target, or for a many-to-many edge the junction joined to
    /// the target (no placeholders).
    fn push_from(&self, sql: &mut SqlBuf) -> Result<()> {
        Self::correlated()?.push_from(sql, &self.alias(), &format!("j{}", self.id));
        Ok(())
    }

    /// ` WHERE <the keys match the parent's> [AND <the edge's filter>]`.
    fn push_condition(&self, sql: &mut SqlBuf, parent: &str) -> Result<()> {
        let alias = self.alias();
        sql.push(" WHERE ");
        Self::correlated()?.push_match(sql, &alias, &format!("j{}", self.id), parent);
        if let Some(filter) = &self.related.filter {
            filter.check()?;
            sql.push(" AND ");
            filter.render(&alias, sql);
        }
        Ok(())
    }

    fn to_one_joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        nested: bool,
        parents: Option<&Parents>,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        let alias = self.alias();
        let target = Self::target();
        let plain = R::META.kind == RelationKind::BelongsTo
            && R::META.target_fields.is_empty()
            && self.related.order.is_empty()
            && self.related.limit_per_parent.is_none()
            && !nested
            // Joined by `balanced` (a statement of at most `BALANCED_JOIN_LIMIT` rows): a
            // probe per row. A plain join was planned as a hash of the whole target
            // (every product for 46 items: 1.2 ms against 0.05 ms).
            && !self.auto;
        if plain {
            // A foreign key to the target's primary key: at most one row, a plain join.
            let correlated = Self::correlated()?;
            sql.push(" LEFT JOIN ");
            correlated.push_from(sql, &alias, &format!("j{}", self.id));
            sql.push(" ON ");
            correlated.push_match(sql, &alias, &format!("j{}", self.id), parent);
            if let Some(filter) = &self.related.filter {
                filter.check()?;
                sql.push(" AND ");
                filter.render(&alias, sql);
            }
        } else {
            // One row at most, whatever the data: a has-one may find several, and
            // inside an aggregate the LIMIT keeps the planner on an index lookup per
            // row (a plain join there is planned as a hash join rebuilt per parent).
            sql.push(" LEFT JOIN LATERAL (SELECT ")
                .columns(&alias, target);
            if self.counts_matches() {
                // Counted before the LIMIT: how many rows the key matched.
                sql.push(", count(*) OVER () AS ").ident(MATCHES);
            }
            sql.push(" FROM ");
            self.push_from(sql)?;
            self.push_condition(sql, parent)?;
            sql.push(" ORDER BY ");
            push_order(sql, &alias, target, &self.related);
            match self.related.limit_per_parent {
                // At most one row either way: a limit of 0 leaves the relation NULL.
                Some(n) => {
                    sql.push(" LIMIT ").param(limit_param(n.min(1))?);
                }
                None => {
                    sql.push(" LIMIT 1");
                }
            }
            sql.push(") AS ").ident(&alias).push(" ON TRUE");
        }
        let own = self.child_parents(parents)?;
        self.plan.joins(enc, &alias, nested, own.as_ref(), sql)
    }

    /// The set-oriented to-many shape: the children of every parent in `parents`
    /// aggregated at once, one group per parent key, joined back to the parent row by
    /// key:
    ///
    /// ```text
    /// LEFT JOIN (SELECT "r2"."order_id" AS "k0", array_agg(ROW(...)) AS "v"
    ///     FROM "order_items" AS "r2" <its edges' joins>
    ///     WHERE "r2"."order_id" IN (SELECT "p2"."id" FROM "__root" AS "p2") [AND <filter>]
    ///     GROUP BY "r2"."order_id") AS "l2" ON "l2"."k0" = "t"."id"
    /// ```
    fn grouped_joins(
        &self,
        enc: AggregateEncoding,
        parent: &str,
        parents: &Parents,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        let alias = self.alias();
        let junction = format!("j{}", self.id);
        let group = format!("l{}", self.id);
        let target = Self::target();
        let correlated = Self::correlated()?;
        let (agg, ctor) = aggregate(enc);
        let mut fields = Vec::new();
        self.row_selects(enc, &mut fields);
        sql.push(" LEFT JOIN (SELECT ");
        correlated.push_keys(sql, &alias, &junction, true);
        sql.push(", ").push(agg).push("(").push(ctor).push("(");
        sql.push(&fields.join(", ")).push(")");
        if !sorted_in_memory(R::META.kind, &self.related) {
            sql.push(" ORDER BY ");
            push_order(sql, &alias, target, &self.related);
        }
        sql.push(") AS \"v\" FROM ");
        correlated.push_from(sql, &alias, &junction);
        // The edges below join inside the aggregate, run once for all rows: to-one
        // edges as plain joins, to-many edges as `LATERAL` subqueries per row. Grouped
        // again, each level would restrict its rows by a subquery repeating every
        // level above (the deep and narrow tree: 20 ms of planning per execution).
        self.plan.joins(enc, &alias, false, None, sql)?;
        sql.push(" WHERE ");
        correlated.push_in_parents(
            sql,
            &alias,
            &junction,
            &parents.from,
            &format!("p{}", self.id),
            parents.as_array,
        );
        if let Some(filter) = &self.related.filter {
            filter.check()?;
            sql.push(" AND ");
            filter.render(&alias, sql);
        }
        sql.push(" GROUP BY ");
        correlated.push_keys(sql, &alias, &junction, false);
        sql.push(") AS ").ident(&group).push(" ON ");
        correlated.push_rejoin(sql, &group, parent);
        Ok(())
    }

    fn to_many_joins(&self, enc: AggregateEncoding, parent: &str, sql: &mut SqlBuf) -> Result<()> {
        let alias = self.alias();
        let target = Self::target();
        let (agg, ctor) = aggregate(enc);
        let mut fields = Vec::new();
        self.row_selects(enc, &mut fields);
        sql.push(" LEFT JOIN LATERAL (SELECT ")
            .push(agg)
            .push("(")
            .push(ctor)
            .push("(");
        sql.push(&fields.join(", ")).push(")");
        if !sorted_in_memory(R::META.kind, &self.related) {
            sql.push(" ORDER BY ");
            push_order(sql, &alias, target, &self.related);
        }
        sql.push(") AS \"v\" FROM ");
        match self.related.limit_per_parent {
            Some(n) => {
                sql.push("(SELECT ").columns(&alias, target).push(" FROM ");
                self.push_from(sql)?;
                self.push_condition(sql, parent)?;
                sql.push(" ORDER BY ");
                push_order(sql, &alias, target, &self.related);
                sql.push(" LIMIT ").param(limit_param(n)?);
                sql.push(") AS ").ident(&alias);
                self.plan.joins(enc, &alias, true, None, sql)?;
            }
            None => {
                // The children's joins go between the FROM item and the condition.
                self.push_from(sql)?;
                self.plan.joins(enc, &alias, true, None, sql)?;
                self.push_condition(sql, parent)?;
            }
        }
        sql.push(") AS ")
            .ident(&format!("l{}", self.id))
            .push(" ON TRUE");
        Ok(())
    }
}

impl<R: Relation> BatchedEdge<R> {
    /// The statement loading the edge for `keys` with the joined children.
    pub(super) fn statement(&self, keys: &[R::Key]) -> Result<SqlBuf> {
        let source = <R::Source as Model>::META;
        let target = <R::Target as Model>::META;
        let base = edge_statement(
            source,
            R::META,
            R::Key::array_params(keys),
            &R::Key::column_types(),
            &self.related,
        )?;
        let m2m = R::META.kind == RelationKind::ManyToMany;
        let mut names: Vec<String> = Vec::new();
        let mut selects: Vec<String> = Vec::new();
        if let (true, Some(through)) = (m2m, &R::META.through) {
            for i in 0..through.source_columns.len() {
                names.push(format!("__k{i}"));
                let mut s = SqlBuf::new();
                s.column(BASE, &format!("__k{i}"));
                selects.push(s.text);
            }
            names.extend((0..through.target_columns.len()).map(|i| format!("__j{i}")));
        }
        for col in target.columns {
            if col.name.starts_with("__") {
                return Err(Error::InvalidInput(format!(
                    "{}.{} cannot be joined onto a batched edge: its name starts with `__`",
                    target.name, col.name
                )));
            }
            names.push(col.name.to_owned());
            let mut s = SqlBuf::new();
            s.column(BASE, col.name);
            selects.push(s.text);
        }
        if self.related.limit_per_parent.is_some() {
            names.push("__rn".to_owned());
        }
        self.plan.selects(AggregateEncoding::Records, &mut selects);
        let mut sql = SqlBuf::new();
        sql.push("SELECT ")
            .push(&selects.join(", "))
            .push(" FROM (");
        // The select list holds no placeholder, so the edge statement's `$1..$n` keep
        // their numbers.
        sql.push(&base.text);
        sql.params.extend(base.params);
        sql.push(") AS ").ident(BASE).push("(");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.ident(name);
        }
        sql.push(")");
        self.plan
            .joins(AggregateEncoding::Records, BASE, false, None, &mut sql)?;
        if self.related.limit_per_parent.is_some() {
            sql.push(" ORDER BY ").column(BASE, "__rn");
        } else if !self.related.order.is_empty() {
            sql.push(" ORDER BY ");
            push_order(&mut sql, BASE, target, &self.related);
        }
        Ok(sql)
    }
}

/// The aggregate function and the row constructor of an encoding.
fn aggregate(enc: AggregateEncoding) -> (&'static str, &'static str) {
    match enc {
        AggregateEncoding::Records => ("array_agg", "ROW"),
        AggregateEncoding::Json => ("json_agg", "json_build_array"),
    }
}

fn push_list(sql: &mut SqlBuf, alias: &str, columns: &[&str], sep: &str) {
    for (i, col) in columns.iter().enumerate() {
        if i > 0 {
            sql.push(sep);
        }
        sql.column(alias, col);
    }
}

/// The ordering of `related` on `alias` (default: the target's primary key).
fn push_order<T>(sql: &mut SqlBuf, alias: &str, target: &ModelMeta, related: &Related<T>) {
    if related.order.is_empty() {
        let pk: Vec<&str> = target.primary_key_columns().map(|c| c.name).collect();
        push_list(sql, alias, &pk, ", ");
        return;
    }
    for (i, term) in related.order.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        term.render(alias, sql);
    }
}

fn limit_param(n: u64) -> Result<Param> {
    i64::try_from(n)
        .map(Param::new)
        .map_err(|_| Error::InvalidInput(format!("limit per parent {n} is out of range")))
}
