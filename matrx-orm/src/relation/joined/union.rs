//! The union shape of `select_related`: one statement whose result is the plain rows
//! prefetch would read, one `UNION ALL` branch per edge, stitched as prefetch stitches
//! them (see the module documentation of `joined`, "The union shape").
//!
//! Every row starts with `"__edge"` (0 for the root, else the edge's number) and
//! `"__pos"` (the root row's position in the query's order; NULL elsewhere). Then
//! each branch has a range of columns of its own: the root's columns and the edges
//! joined into its rows, then per branch edge (in plan order, depth first) the
//! junction's parent-key columns for a many-to-many edge, the target's columns and
//! the edges joined into the target's rows. A branch fills its range and leaves NULL
//! everywhere else. The root branch comes first and writes its NULLs typed (a field of
//! a NULL of the table's row type, `(NULL::"customers")."email"`: no type name is
//! spelled), so the `UNION`'s column types resolve to the columns' own.
//!
//! An edge's rows are restricted to its parents' keys by a semi-join on its parent
//! branch's rows: the root's common table expression, or for an edge below another
//! branch, that branch's rows as a common table expression of their own (read by the
//! branch and by every child branch).

use std::mem::take;

use tokio_postgres::Row;

use crate::base::decode::Fields;
use crate::base::error::{Error, Result};
use crate::base::key::{dedup_keys, Key};
use crate::base::meta::RelationKind;
use crate::base::sql::{qualified, quote_ident, SqlBuf, ROOT};
use crate::cache::session::Targets;
use crate::relation::batch::group;
use crate::relation::joined::decode::interned;
use crate::relation::joined::plan::{JoinedEdge, Parents, Plan};
use crate::relation::joined::policy::{
    parent_keys_as_array, union_branch, AggregateEncoding, JoinedShape,
};
use crate::relation::joined::records::Src;
use crate::relation::joined::render::{push_root_rows, ROOT_ROWS};
use crate::relation::joined::slots::Slots;
use crate::relation::stitch::attach;
use crate::schema::criteria::Criteria;
use crate::schema::model::{Model, Relation};
use crate::schema::slot::Slot;

/// The column holding a row's branch: 0 for the root, else the edge's number.
const EDGE: &str = "__edge";
/// The column holding a root row's position in the query's order.
const POS: &str = "__pos";
/// The fields before the root's columns: `"__edge"`, `"__pos"`.
const LEAD: usize = 2;

/// `(NULL::<table>)."<column>"`: a NULL of the column's own type.
fn typed_null(schema: Option<&str>, table: &str, column: &str) -> String {
    format!(
        "(NULL::{}).{}",
        qualified(schema, table),
        quote_ident(column)
    )
}

impl<S: Model> Plan<S> {
    /// Makes the joined edges that fit union branches (`policy::union_branch`), and
    /// below them the edges that fit; returns whether the statement takes the union
    /// shape, which it does when a to-many edge is a branch (a tree of to-one edges
    /// keeps its joins: one row per parent already).
    pub(crate) fn choose_union(&mut self, shape: JoinedShape, parents: Option<usize>) -> bool {
        for edge in &mut self.joined {
            edge.choose_branch(shape, parents);
        }
        if self.has_to_many_branch() {
            return true;
        }
        for edge in &mut self.joined {
            edge.clear_branch();
        }
        false
    }

    pub(super) fn branches(&self) -> impl Iterator<Item = &dyn super::plan::JoinEdge<S>> {
        self.joined.iter().filter(|e| e.is_branch()).map(|e| &**e)
    }

    pub(super) fn has_branches(&self) -> bool {
        self.joined.iter().any(|e| e.is_branch())
    }

    pub(super) fn has_to_many_branch(&self) -> bool {
        self.branches().any(|e| e.has_to_many_branch())
    }

    /// Places the fields of every branch edge, depth first.
    pub(super) fn layout(&mut self, slots: &mut Slots) {
        for edge in self.joined.iter_mut().filter(|e| e.is_branch()) {
            edge.layout(slots);
        }
    }

    /// Typed NULLs for the fields the joined (not branch) edges add to a row.
    pub(super) fn null_selects(&self, out: &mut Vec<String>) {
        for edge in self.joined.iter().filter(|e| !e.is_branch()) {
            edge.null_selects(out);
        }
    }

    /// ` , "e<n>" AS (...)` for every branch edge with branches below it.
    pub(super) fn union_ctes(&self, parents: &Parents, sql: &mut SqlBuf) -> Result<()> {
        for edge in self.branches() {
            edge.union_cte(parents, sql)?;
        }
        Ok(())
    }

    /// ` UNION ALL SELECT ...` for every branch edge, depth first.
    pub(super) fn union_branches(
        &self,
        parents: &Parents,
        width: usize,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        for edge in self.branches() {
            edge.union_branch(parents, width, sql)?;
        }
        Ok(())
    }

    /// Decodes a row of branch `n` (an edge at this level or below); false if no
    /// edge here has that number.
    pub(super) fn union_row(&mut self, n: usize, row: &Row) -> Result<bool> {
        for edge in self.joined.iter_mut().filter(|e| e.is_branch()) {
            if edge.union_row(n, row)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Attaches the rows every branch edge decoded to `parents`, then theirs below.
    pub(super) fn union_attach(&mut self, parents: &[&S]) -> Result<()> {
        for edge in self.joined.iter_mut().filter(|e| e.is_branch()) {
            edge.union_attach(parents)?;
        }
        Ok(())
    }
}

impl<R: Relation> JoinedEdge<R> {
    pub(super) fn choose_branch(&mut self, shape: JoinedShape, parents: Option<usize>) {
        self.branch = union_branch(R::META.kind, &self.related, shape, parents);
        if self.branch {
            for edge in &mut self.plan.joined {
                edge.choose_branch(shape, parents);
            }
        }
    }

    pub(super) fn clear_branch(&mut self) {
        self.branch = false;
        for edge in &mut self.plan.joined {
            edge.clear_branch();
        }
    }

    pub(super) fn has_to_many_branch(&self) -> bool {
        self.branch && (!R::META.kind.is_to_one() || self.plan.has_to_many_branch())
    }

    fn m2m() -> bool {
        R::META.kind == RelationKind::ManyToMany
    }

    /// The junction's parent-key columns a many-to-many branch leads with.
    fn junction_keys() -> &'static [&'static str] {
        match (&R::META.through, Self::m2m()) {
            (Some(through), true) => through.source_columns,
            _ => &[],
        }
    }

    /// The fields of this edge's own branch.
    fn branch_width(&self) -> usize {
        Self::junction_keys().len() + Self::target().columns.len() + self.plan.width()
    }

    /// Places this branch's fields (see [`Slots`]), then its branches'.
    pub(super) fn layout(&mut self, slots: &mut Slots) {
        let mut fields: Vec<(Option<String>, String)> = Vec::with_capacity(self.branch_width());
        if let Some(through) = &R::META.through {
            let schema = through.schema.or(<R::Source as Model>::META.schema);
            for col in Self::junction_keys() {
                fields.push((None, typed_null(schema, through.table, col)));
            }
        }
        let target = Self::target();
        for col in target.columns {
            let ty = (col.sql_type)().into_owned();
            fields.push((Some(ty), typed_null(target.schema, target.table, col.name)));
        }
        let mut joined = Vec::new();
        self.plan.null_selects(&mut joined);
        fields.extend(joined.into_iter().map(|null| (None, null)));
        self.slots = slots.place(fields);
        self.plan.layout(slots);
    }

    fn target_nulls(&self, out: &mut Vec<String>) {
        let target = Self::target();
        for col in target.columns {
            out.push(typed_null(target.schema, target.table, col.name));
        }
    }

    pub(super) fn null_selects(&self, out: &mut Vec<String>) {
        if R::META.kind.is_to_one() {
            self.target_nulls(out);
            if self.counts_matches() {
                out.push("NULL::int8".to_owned());
            }
            self.plan.null_selects(out);
        } else {
            out.push("NULL::record[]".to_owned());
        }
    }

    /// The common table expression holding this branch's rows, when branches below
    /// read them: `, "e<n>" AS (SELECT ["j<n>".<parent key> AS "__k0", ...]
    /// "r<n>".<target columns> FROM <edge> WHERE <keys in parents> [AND <filter>])`.
    fn cte_name(&self) -> String {
        format!("e{}", self.id)
    }

    fn junction_alias(&self) -> String {
        format!("j{}", self.id)
    }

    /// ` WHERE <keys in the parents' rows> [AND <the edge's filter>]`.
    fn push_restriction(&self, parents: &Parents, sql: &mut SqlBuf) -> Result<()> {
        let alias = self.alias();
        sql.push(" WHERE ");
        Self::correlated()?.push_in_parents(
            sql,
            &alias,
            &self.junction_alias(),
            &parents.from,
            &format!("p{}", self.id),
            parents.as_array,
        );
        if let Some(filter) = &self.related.filter {
            filter.check()?;
            sql.push(" AND ");
            filter.render(&alias, sql);
        }
        Ok(())
    }

    fn own_parents(&self, parents: &Parents) -> Parents {
        let mut from = SqlBuf::new();
        from.ident(&self.cte_name());
        Parents {
            from: from.text,
            as_array: parents.as_array,
        }
    }

    pub(super) fn union_cte(&self, parents: &Parents, sql: &mut SqlBuf) -> Result<()> {
        if !self.plan.has_branches() {
            return Ok(());
        }
        let alias = self.alias();
        let junction = self.junction_alias();
        for col in Self::target().columns {
            if col.name.starts_with("__") {
                return Err(Error::InvalidInput(format!(
                    "{}.{} cannot be loaded by select_related below another edge: its name starts with `__`",
                    Self::target().name,
                    col.name
                )));
            }
        }
        sql.push(", ").ident(&self.cte_name()).push(" AS (SELECT ");
        for (i, col) in Self::junction_keys().iter().enumerate() {
            sql.column(&junction, col)
                .push(" AS ")
                .ident(&format!("__k{i}"))
                .push(", ");
        }
        sql.columns(&alias, Self::target()).push(" FROM ");
        Self::correlated()?.push_from(sql, &alias, &junction);
        self.push_restriction(parents, sql)?;
        sql.push(")");
        self.plan.union_ctes(&self.own_parents(parents), sql)
    }

    pub(super) fn union_branch(
        &self,
        parents: &Parents,
        width: usize,
        sql: &mut SqlBuf,
    ) -> Result<()> {
        let alias = self.alias();
        let junction = self.junction_alias();
        let from_cte = self.plan.has_branches();
        let mut own: Vec<String> = Vec::with_capacity(self.branch_width());
        for (i, col) in Self::junction_keys().iter().enumerate() {
            let mut s = SqlBuf::new();
            if from_cte {
                s.column(&alias, &format!("__k{i}"));
            } else {
                s.column(&junction, col);
            }
            own.push(s.text);
        }
        for col in Self::target().columns {
            let mut s = SqlBuf::new();
            s.column(&alias, col.name);
            own.push(s.text);
        }
        self.plan.selects(AggregateEncoding::Records, &mut own);
        let mut cells: Vec<Option<&str>> = vec![None; width];
        for (field, s) in self.slots.iter().zip(&own) {
            if let Some(cell) = cells.get_mut(*field) {
                *cell = Some(s);
            }
        }
        sql.push(" UNION ALL SELECT ").push(&self.id.to_string());
        for cell in cells.iter().skip(1) {
            sql.push(", ").push(cell.unwrap_or("NULL"));
        }
        sql.push(" FROM ");
        if from_cte {
            sql.ident(&self.cte_name()).push(" AS ").ident(&alias);
            self.plan
                .joins(AggregateEncoding::Records, &alias, false, None, sql)?;
        } else {
            Self::correlated()?.push_from(sql, &alias, &junction);
            self.plan
                .joins(AggregateEncoding::Records, &alias, false, None, sql)?;
            self.push_restriction(parents, sql)?;
        }
        self.plan
            .union_branches(&self.own_parents(parents), width, sql)
    }

    pub(super) fn union_row(&mut self, n: usize, row: &Row) -> Result<bool> {
        if n != self.id {
            return self.plan.union_row(n, row);
        }
        // The map is read while the edge decodes into itself: held aside meanwhile.
        let slots = take(&mut self.slots);
        let read = self.branch_row(row, &slots);
        self.slots = slots;
        read.map(|()| true)
    }

    /// Decodes one row of this branch, whose fields are the row's `slots`.
    fn branch_row(&mut self, row: &Row, slots: &[usize]) -> Result<()> {
        let src = Src::Map(row, slots);
        let target_at = Self::junction_keys().len();
        let t = if Self::m2m() {
            // A target linked to several parents arrives once per link.
            let tk = <R::Target as Model>::decode_key_fields(&src, target_at)?;
            match self.seen.get(&tk) {
                Some(t) => t.clone(),
                None => {
                    let t = self.branch_target(&src, target_at)?;
                    self.seen.insert(tk, t.clone());
                    t
                }
            }
        } else {
            self.branch_target(&src, target_at)?
        };
        let key = match (Self::m2m(), slots.first()) {
            // The junction's key fields are consecutive (see `Slots::place`).
            (true, Some(&first)) => Some(R::Key::decode(row, first, Self::target().name)?),
            _ => R::target_key(&t),
        };
        if let Some(key) = key {
            self.pairs.push((key, t));
        }
        Ok(())
    }

    /// Decodes one distinct target at `at` (joining the session's identity map) and
    /// the edges joined into its row.
    fn branch_target(&mut self, src: &Src<'_>, at: usize) -> Result<std::sync::Arc<R::Target>> {
        let t = interned(
            <R::Target as Model>::decode_fields(src, at)?,
            self.held.as_ref(),
        );
        self.plan
            .decode(&t, src, at + Self::target().columns.len())?;
        self.decoded.push(t.clone());
        Ok(t)
    }

    /// Groups the decoded rows by parent key, attaches them to `parents` (the one
    /// stitcher, as prefetch), records the entries in the session, then does the same
    /// for the branches below on this edge's targets.
    pub(super) fn union_attach(&mut self, parents: &[&R::Source]) -> Result<()> {
        let fresh: Vec<&R::Source> = parents
            .iter()
            .copied()
            .filter(|p| !R::slot(p).is_loaded())
            .collect();
        let groups = group::<R>(take(&mut self.pairs), self.decoded.clone(), &self.related)?;
        attach::<R>(fresh.iter().copied(), &groups);
        if let Some(held) = &self.held {
            let keys = dedup_keys(fresh.iter().filter_map(|p| R::source_key(p)));
            held.cache.store::<R>(
                held.generation,
                keys.into_iter().map(|key| {
                    let targets = Targets::from_slice(groups.get(&key));
                    (key, targets)
                }),
            );
        }
        let JoinedEdge { plan, decoded, .. } = self;
        if plan.has_branches() && !decoded.is_empty() {
            let refs: Vec<&R::Target> = decoded.iter().map(|t| &**t).collect();
            plan.union_attach(&refs)?;
        }
        Ok(())
    }
}

/// The union statement for `rows` and the branches of `plan` (laid out by
/// [`Plan::layout`] in `slots`).
pub(super) fn union_statement<M: Model>(
    rows: &Criteria<M>,
    plan: &Plan<M>,
    slots: &Slots,
) -> Result<SqlBuf> {
    let width = slots.width();
    rows.check()?;
    let mut sql = SqlBuf::new();
    push_root_rows(&mut sql, rows)?;
    sql.push(")");
    let mut from = SqlBuf::new();
    from.ident(ROOT_ROWS);
    let parents = Parents {
        from: from.text,
        as_array: parent_keys_as_array(rows.is_paged()),
    };
    plan.union_ctes(&parents, &mut sql)?;
    // The root branch: its position, its columns and joined edges, typed NULLs for
    // every branch's fields.
    sql.push(" SELECT 0 AS ")
        .ident(EDGE)
        .push(", row_number() OVER (");
    rows.render_order(ROOT, &mut sql);
    sql.push(") AS ").ident(POS);
    let mut selects: Vec<String> = Vec::with_capacity(width);
    for col in M::META.columns {
        let mut s = SqlBuf::new();
        s.column(ROOT, col.name);
        selects.push(s.text);
    }
    plan.selects(AggregateEncoding::Records, &mut selects);
    selects.extend(slots.nulls().map(str::to_owned));
    if selects.len() + LEAD != width {
        return Err(Error::InvalidInput(format!(
            "{}: the union statement lays out {} fields but writes {}",
            M::META.name,
            width,
            selects.len() + LEAD
        )));
    }
    for s in &selects {
        sql.push(", ").push(s);
    }
    sql.push(" FROM ").ident(ROOT_ROWS).push(" AS ").ident(ROOT);
    plan.joins(
        AggregateEncoding::Records,
        ROOT,
        false,
        Some(&parents),
        &mut sql,
    )?;
    plan.union_branches(&parents, width, &mut sql)?;
    Ok(sql)
}

/// Lays out `plan`'s branches and writes the statement; returns it with the width.
pub(super) fn prepare_statement<M: Model>(
    rows: &Criteria<M>,
    plan: &mut Plan<M>,
) -> Result<(SqlBuf, usize)> {
    let mut slots = Slots::new(LEAD + M::META.columns.len() + plan.width());
    plan.layout(&mut slots);
    let sql = union_statement(rows, plan, &slots)?;
    Ok((sql, slots.width()))
}

/// Decodes the union statement's rows: root rows in the query's order (their
/// joined edges filled as they are read), every branch's rows collected, then
/// attached level by level.
pub(super) fn decode_rows<M: Model>(plan: &mut Plan<M>, found: &[Row]) -> Result<Vec<M>> {
    let cols = M::META.columns.len();
    let mut roots: Vec<(i64, M)> = Vec::new();
    for row in found {
        let src = Src::Row(row);
        let n: i32 = src.field(0, M::META.name, EDGE)?;
        if n == 0 {
            let pos: i64 = src.field(1, M::META.name, POS)?;
            let model = M::decode_fields(&src, LEAD)?;
            plan.decode(&model, &src, LEAD + cols)?;
            roots.push((pos, model));
            continue;
        }
        let known = usize::try_from(n)
            .ok()
            .map(|n| plan.union_row(n, row))
            .transpose()?;
        if known != Some(true) {
            return Err(Error::InvalidInput(format!(
                "{}: a row of the union statement names branch {n}, which the plan has not",
                M::META.name
            )));
        }
    }
    if !roots.is_sorted_by_key(|(pos, _)| *pos) {
        roots.sort_by_key(|(pos, _)| *pos);
    }
    let out: Vec<M> = roots.into_iter().map(|(_, m)| m).collect();
    let parents: Vec<&M> = out.iter().collect();
    plan.union_attach(&parents)?;
    Ok(out)
}
