//! Decoding a joined statement's rows: each parent's joined edges read from the
//! parent's row (to-one columns) or from its `record[]` aggregate (to-many), targets
//! that repeat decoded once and shared, every target joining the session's identity
//! map, slots filled through `Slot::fill`.

use std::sync::Arc;

use crate::base::decode::Fields;
use crate::base::error::{Error, Result};
use crate::relation::batch::{ambiguous, sort_by_key, sorted_in_memory};
use crate::relation::joined::plan::{BatchedEdge, Held, JoinedEdge, Plan};
use crate::relation::joined::records::{Record, Records, Src};
use crate::relation::joined::render::MATCHES;
use crate::schema::model::{Model, Relation};
use crate::schema::slot::Slot;

impl<S: Model> Plan<S> {
    /// Decodes the joined edges of `parent` from `src`, whose field `at` is the first
    /// one after the parent's columns, and fills their slots.
    pub(crate) fn decode(&mut self, parent: &S, src: &Src<'_>, mut at: usize) -> Result<()> {
        for edge in self.joined.iter_mut().filter(|e| !e.is_branch()) {
            edge.decode(parent, src, at)?;
            at += edge.width();
        }
        Ok(())
    }
}

impl<R: Relation> JoinedEdge<R> {
    pub(super) fn decode(&mut self, parent: &R::Source, src: &Src<'_>, at: usize) -> Result<()> {
        let target = <R::Target as Model>::META;
        if R::META.kind.is_to_one() {
            // A missed LEFT JOIN leaves every column NULL; primary keys never are.
            let pk0 = target.primary_key.first().copied().unwrap_or(0);
            if src.is_null(at + pk0) {
                self.fill(parent, Vec::new());
                return Ok(());
            }
            if self.counts_matches() {
                let count: i64 = src.field(at + target.columns.len(), target.name, MATCHES)?;
                if count > 1 {
                    let key = R::source_key(parent);
                    return Err(match key {
                        Some(key) => ambiguous::<R>(&key, count as usize),
                        None => Error::InvalidInput(format!(
                            "{}.{}: {count} rows matched a NULL key",
                            <R::Source as Model>::META.name,
                            R::META.name
                        )),
                    });
                }
            }
            let t = self.target_at(src, at)?;
            self.fill(parent, vec![t]);
            return Ok(());
        }
        let records: Option<Records<'_>> = src.field(at, target.name, R::META.name)?;
        let mut targets = Vec::new();
        if let Some(records) = records {
            let bad = |message: String| Error::Decode {
                model: <R::Source as Model>::META.name,
                column: R::META.name.to_owned(),
                rust_type: "record[]",
                pg_type: "record[]".to_owned(),
                message,
            };
            let mut elements = records.elements().map_err(bad)?;
            targets.reserve(elements.len());
            let mut record = Record::default();
            while elements.next_into(&mut record).map_err(bad)? {
                targets.push(self.target_at(&Src::Rec(&record), 0)?);
            }
        }
        if sorted_in_memory(R::META.kind, &self.related) {
            sort_by_key(&mut targets);
        }
        self.fill(parent, targets);
        Ok(())
    }

    /// Fills `parent`'s slot (unless loaded already) and notes the entry to record.
    fn fill(&mut self, parent: &R::Source, targets: Vec<Arc<R::Target>>) {
        if self.held.is_some() {
            if let Some(key) = R::source_key(parent) {
                self.loaded.push((key, targets.clone()));
            }
        }
        R::slot(parent).fill(<R::Slot as Slot<R::Target>>::value_from(targets));
    }

    /// Decodes one target row at `at` of `src` (or takes the one decoded before).
    fn target_at(&mut self, src: &Src<'_>, at: usize) -> Result<Arc<R::Target>> {
        let key = if Self::shares_rows() {
            let key = <R::Target as Model>::decode_key_fields(src, at)?;
            if let Some(t) = self.seen.get(&key) {
                return Ok(t.clone());
            }
            Some(key)
        } else {
            None
        };
        let target = interned(
            <R::Target as Model>::decode_fields(src, at)?,
            self.held.as_ref(),
        );
        let nested = at + Self::target().columns.len() + self.match_count_width();
        self.plan.decode(&target, src, nested)?;
        if let Some(key) = key {
            self.seen.insert(key, target.clone());
        }
        if self.keep {
            self.decoded.push(target.clone());
        }
        Ok(target)
    }
}

impl<R: Relation> BatchedEdge<R> {
    /// Decodes a target (joining the session's identity map), then its joined edges.
    pub(super) fn decode_target(
        &mut self,
        src: &Src<'_>,
        at: usize,
        held: Option<&Held>,
    ) -> Result<Arc<R::Target>> {
        let t = interned(<R::Target as Model>::decode_fields(src, at)?, held);
        self.plan
            .decode(&t, src, at + <R::Target as Model>::META.columns.len())?;
        Ok(t)
    }
}

/// `row` as the session's instance of it: the one already held for its key, or `row`
/// now held. Its joined edges are decoded after, onto whichever instance this is
/// (relation fields are set once, so an instance's earlier loads are kept).
pub(super) fn interned<T: Model>(row: T, held: Option<&Held>) -> Arc<T> {
    let mut row = Arc::new(row);
    if let Some(held) = held {
        held.cache
            .intern(held.generation, std::slice::from_mut(&mut row));
    }
    row
}
