//! [`Related`]: how one relation edge is customised (filter, order, limit per parent).

use crate::schema::column::OrderBy;
use crate::schema::filter::Filter;

/// The customisation of one relation load: which target rows, in which order, and
/// how many per parent. The default is every row, in primary-key order.
pub struct Related<T> {
    pub(crate) filter: Option<Filter<T>>,
    pub(crate) order: Vec<OrderBy<T>>,
    pub(crate) limit_per_parent: Option<u64>,
}

impl<T> Default for Related<T> {
    fn default() -> Self {
        Related {
            filter: None,
            order: Vec::new(),
            limit_per_parent: None,
        }
    }
}

impl<T> Clone for Related<T> {
    fn clone(&self) -> Self {
        Related {
            filter: self.filter.clone(),
            order: self.order.clone(),
            limit_per_parent: self.limit_per_parent,
        }
    }
}

impl<T> std::fmt::Debug for Related<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Related")
            .field("filter", &self.filter)
            .field("order", &self.order)
            .field("limit_per_parent", &self.limit_per_parent)
            .finish()
    }
}

impl<T> Related<T> {
    /// Whether this is the plain load (all rows, primary-key order).
    pub fn is_default(&self) -> bool {
        self.filter.is_none() && self.order.is_empty() && self.limit_per_parent.is_none()
    }

    pub(crate) fn add_filter(&mut self, filter: Filter<T>) {
        self.filter = Some(match self.filter.take() {
            Some(prev) => prev.and(filter),
            None => filter,
        });
    }
}
