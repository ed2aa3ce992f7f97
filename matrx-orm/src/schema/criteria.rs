//! [`Criteria`]: which rows of a model a statement reads — filter, ordering, limit,
//! offset — and their rendering. A [`Select`](crate::Select) holds one; the joined
//! planner renders its root statement from it.

use crate::base::error::{Error, Result};
use crate::base::sql::SqlBuf;
use crate::base::value::Param;
use crate::schema::column::OrderBy;
use crate::schema::filter::{Filter, Node};

/// The rows of `M` a query reads.
pub(crate) struct Criteria<M> {
    pub(crate) filter: Option<Node>,
    pub(crate) order: Vec<OrderBy<M>>,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: Option<u64>,
}

impl<M> Default for Criteria<M> {
    fn default() -> Self {
        Criteria {
            filter: None,
            order: Vec::new(),
            limit: None,
            offset: None,
        }
    }
}

impl<M> Clone for Criteria<M> {
    fn clone(&self) -> Self {
        Criteria {
            filter: self.filter.clone(),
            order: self.order.clone(),
            limit: self.limit,
            offset: self.offset,
        }
    }
}

impl<M> Criteria<M> {
    /// Adds `filter` to the filters so far (by AND).
    pub(crate) fn and(&mut self, filter: Filter<M>) {
        self.filter = Some(match self.filter.take() {
            None => filter.node,
            Some(Node::And(mut nodes)) => {
                nodes.push(filter.node);
                Node::And(nodes)
            }
            Some(prev) => Node::And(vec![prev, filter.node]),
        });
    }

    /// Refuses a filter that could not be built (call before rendering).
    pub(crate) fn check(&self) -> Result<()> {
        match &self.filter {
            Some(node) => node.check(),
            None => Ok(()),
        }
    }

    /// The filter, rendered with columns qualified by `alias` (`TRUE` when unfiltered).
    pub(crate) fn render_where(&self, alias: &str, sql: &mut SqlBuf) {
        match &self.filter {
            Some(node) => node.render(alias, sql),
            None => {
                sql.push("TRUE");
            }
        }
    }

    /// ` ORDER BY ...`, or nothing when unordered.
    pub(crate) fn render_order(&self, alias: &str, sql: &mut SqlBuf) {
        if self.order.is_empty() {
            return;
        }
        sql.push(" ORDER BY ");
        for (i, term) in self.order.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            term.render(alias, sql);
        }
    }

    /// Whether the rows are limited or offset.
    pub(crate) fn is_paged(&self) -> bool {
        self.limit.is_some() || self.offset.is_some()
    }

    /// At most how many rows the statement returns, if it says (its limit).
    pub(crate) fn bound(&self) -> Option<usize> {
        self.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// ` LIMIT $n OFFSET $m`, each when set.
    pub(crate) fn render_paging(&self, sql: &mut SqlBuf) -> Result<()> {
        if let Some(n) = self.limit {
            sql.push(" LIMIT ").param(Param::new(to_i64(n, "limit")?));
        }
        if let Some(n) = self.offset {
            sql.push(" OFFSET ").param(Param::new(to_i64(n, "offset")?));
        }
        Ok(())
    }
}

fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidInput(format!("{what} {n} is out of range")))
}
