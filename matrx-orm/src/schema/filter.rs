//! The typed filter tree: `Customer::EMAIL.eq(x) & !Customer::NAME.like("A%")`.
//!
//! A [`Filter<M>`] can only be applied to queries on `M`: mixing models is a compile
//! error. Rendering writes qualified column names (`"t"."email"`) and binds every
//! value as a parameter.

use std::marker::PhantomData;

use crate::base::error::{Error, Result};
use crate::base::meta::{ModelMeta, RelationMeta};
use crate::base::sql::SqlBuf;
use crate::base::value::Param;
use crate::schema::correlated::Correlated;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    ILike,
}

impl CmpOp {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => " = ",
            CmpOp::Ne => " <> ",
            CmpOp::Gt => " > ",
            CmpOp::Gte => " >= ",
            CmpOp::Lt => " < ",
            CmpOp::Lte => " <= ",
            CmpOp::Like => " LIKE ",
            CmpOp::ILike => " ILIKE ",
        }
    }
}

/// The untyped filter tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Cmp {
        column: &'static str,
        op: CmpOp,
        value: Param,
    },
    Any {
        column: &'static str,
        values: Param,
        negated: bool,
    },
    IsNull {
        column: &'static str,
        negated: bool,
    },
    Between {
        column: &'static str,
        low: Param,
        high: Param,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    /// `(node) IS NOT TRUE`: true when the node is false or NULL.
    NotTrue(Box<Node>),
    /// `[NOT] EXISTS (...)`: some row of a relation matches (see [`Exists`]).
    Exists(Box<Exists>),
    /// A condition that could not be built; statements refuse it before rendering
    /// ([`Node::check`]).
    Invalid(String),
}

/// A relation filter: `[NOT] EXISTS (SELECT 1 FROM <target> WHERE <keys match the
/// parent's> AND <inner>)`, through the junction for a many-to-many relation. A
/// semi-join: it never multiplies the parent's rows.
#[derive(Debug, Clone)]
pub(crate) struct Exists {
    negated: bool,
    relation: Correlated,
    inner: Node,
}

impl Exists {
    /// Renders the subquery; its aliases derive from the parent's, so nested relation
    /// filters never shadow an alias they refer to.
    fn render(&self, parent: &str, sql: &mut SqlBuf) {
        let alias = format!("{parent}_x");
        let junction = format!("{parent}_j");
        sql.push(if self.negated {
            "NOT EXISTS (SELECT 1 FROM "
        } else {
            "EXISTS (SELECT 1 FROM "
        });
        self.relation.push_from(sql, &alias, &junction);
        sql.push(" WHERE ");
        self.relation.push_match(sql, &alias, &junction, parent);
        sql.push(" AND ");
        self.inner.render(&alias, sql);
        sql.push(")");
    }
}

impl Node {
    pub(crate) fn render(&self, alias: &str, sql: &mut SqlBuf) {
        match self {
            Node::Cmp { column, op, value } => {
                sql.column(alias, column)
                    .push(op.sql())
                    .param(value.clone());
            }
            Node::Any {
                column,
                values,
                negated,
            } => {
                sql.column(alias, column);
                sql.push(if *negated { " <> ALL(" } else { " = ANY(" });
                sql.param(values.clone()).push(")");
            }
            Node::IsNull { column, negated } => {
                sql.column(alias, column);
                sql.push(if *negated { " IS NOT NULL" } else { " IS NULL" });
            }
            Node::Between { column, low, high } => {
                sql.column(alias, column)
                    .push(" BETWEEN ")
                    .param(low.clone());
                sql.push(" AND ").param(high.clone());
            }
            Node::And(nodes) => render_list(nodes, " AND ", "TRUE", alias, sql),
            Node::Or(nodes) => render_list(nodes, " OR ", "FALSE", alias, sql),
            Node::Not(node) => {
                sql.push("NOT (");
                node.render(alias, sql);
                sql.push(")");
            }
            Node::NotTrue(node) => {
                sql.push("(");
                node.render(alias, sql);
                sql.push(") IS NOT TRUE");
            }
            Node::Exists(exists) => exists.render(alias, sql),
            // Never sent: `check` refuses it first.
            Node::Invalid(_) => {
                sql.push("FALSE");
            }
        }
    }

    /// Refuses a tree holding a condition that could not be built.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Node::Invalid(message) => Err(Error::InvalidInput(message.clone())),
            Node::And(nodes) | Node::Or(nodes) => nodes.iter().try_for_each(Node::check),
            Node::Not(node) | Node::NotTrue(node) => node.check(),
            Node::Exists(exists) => exists.inner.check(),
            Node::Cmp { .. } | Node::Any { .. } | Node::IsNull { .. } | Node::Between { .. } => {
                Ok(())
            }
        }
    }
}

fn render_list(nodes: &[Node], sep: &str, empty: &str, alias: &str, sql: &mut SqlBuf) {
    if nodes.is_empty() {
        sql.push(empty);
        return;
    }
    sql.push("(");
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            sql.push(sep);
        }
        node.render(alias, sql);
    }
    sql.push(")");
}

/// A condition on rows of model `M`.
///
/// Build one from a column handle and combine with [`and`](Self::and) / `&`,
/// [`or`](Self::or) / `|`, and [`not`](Self::not) / `!`.
///
/// ```
/// # use matrx_orm::prelude::*;
/// # #[derive(Model)] #[orm(table = "orders")]
/// # pub struct Order { #[orm(primary_key)] pub id: i64, pub status: String, pub total_cents: i64 }
/// let big_or_paid = Order::TOTAL_CENTS.gt(10_000) | Order::STATUS.eq("paid");
/// let f = big_or_paid & !Order::STATUS.eq("cancelled");
/// ```
pub struct Filter<M> {
    pub(crate) node: Node,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Filter<M> {
    fn clone(&self) -> Self {
        Filter::new(self.node.clone())
    }
}

impl<M> std::fmt::Debug for Filter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.node, f)
    }
}

impl<M> Filter<M> {
    pub(crate) fn new(node: Node) -> Self {
        Filter {
            node,
            _marker: PhantomData,
        }
    }

    /// Both conditions.
    pub fn and(self, other: Filter<M>) -> Filter<M> {
        match self.node {
            Node::And(mut nodes) => {
                nodes.push(other.node);
                Filter::new(Node::And(nodes))
            }
            node => Filter::new(Node::And(vec![node, other.node])),
        }
    }

    /// Either condition.
    pub fn or(self, other: Filter<M>) -> Filter<M> {
        match self.node {
            Node::Or(mut nodes) => {
                nodes.push(other.node);
                Filter::new(Node::Or(nodes))
            }
            node => Filter::new(Node::Or(vec![node, other.node])),
        }
    }

    /// The negated condition (SQL three-valued logic: rows where the condition is
    /// NULL match neither the condition nor its negation).
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter<M> {
        Filter::new(Node::Not(Box::new(self.node)))
    }

    /// All of the given conditions (`TRUE` when there are none).
    pub fn all(filters: impl IntoIterator<Item = Filter<M>>) -> Filter<M> {
        Filter::new(Node::And(filters.into_iter().map(|f| f.node).collect()))
    }

    /// Any of the given conditions (`FALSE` when there are none).
    pub fn any(filters: impl IntoIterator<Item = Filter<M>>) -> Filter<M> {
        Filter::new(Node::Or(filters.into_iter().map(|f| f.node).collect()))
    }

    /// Writes the condition with columns qualified by `alias`.
    pub(crate) fn render(&self, alias: &str, sql: &mut SqlBuf) {
        self.node.render(alias, sql);
    }

    /// Refuses a condition that could not be built (checked before rendering).
    pub(crate) fn check(&self) -> Result<()> {
        self.node.check()
    }

    /// Relation `rel` of `source` (the model `M`) has a target matching `inner`, or
    /// with `negated`, none does. Built by [`Relation::any`](crate::Relation::any) and
    /// friends.
    pub(crate) fn related<T>(
        source: &'static ModelMeta,
        rel: &'static RelationMeta,
        inner: Filter<T>,
        negated: bool,
    ) -> Filter<M> {
        match Correlated::new(source, rel) {
            Ok(relation) => Filter::new(Node::Exists(Box::new(Exists {
                negated,
                relation,
                inner: inner.node,
            }))),
            Err(err) => Filter::new(Node::Invalid(err.to_string())),
        }
    }
}

impl<M> std::ops::BitAnd for Filter<M> {
    type Output = Filter<M>;
    fn bitand(self, rhs: Filter<M>) -> Filter<M> {
        self.and(rhs)
    }
}

impl<M> std::ops::BitOr for Filter<M> {
    type Output = Filter<M>;
    fn bitor(self, rhs: Filter<M>) -> Filter<M> {
        self.or(rhs)
    }
}

impl<M> std::ops::Not for Filter<M> {
    type Output = Filter<M>;
    fn not(self) -> Filter<M> {
        Filter::not(self)
    }
}
