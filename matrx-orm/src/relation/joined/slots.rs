//! The fields of the union shape's rows (see `union`): which branch column goes in
//! which field.

/// The fields of the union's rows after the root's, shared between branches: a
/// branch's column takes the first field holding a column of the same declared type
/// (`ColumnMeta::sql_type`) that the branch does not use yet, else a new one. Rows
/// stay about as narrow as the widest branch, not the sum of them. The fields a
/// branch joins in (its to-one edges' columns, its aggregates) and a many-to-many
/// junction's key (consecutive fields, read as one key) are never shared.
pub(crate) struct Slots {
    /// The first field after the root's.
    first: usize,
    /// Per field: the declared type shared on (`None`: not shared) and a NULL of it.
    nulls: Vec<(Option<String>, String)>,
}

impl Slots {
    pub(super) fn new(first: usize) -> Slots {
        Slots {
            first,
            nulls: Vec::new(),
        }
    }

    /// The number of fields per row.
    pub(super) fn width(&self) -> usize {
        self.first + self.nulls.len()
    }

    /// The fields of one branch's columns, given as (declared type if shared, typed
    /// NULL): columns not shared get new fields, consecutive when they come first.
    pub(super) fn place(&mut self, fields: Vec<(Option<String>, String)>) -> Vec<usize> {
        let mut taken = vec![false; self.nulls.len()];
        let mut out = Vec::with_capacity(fields.len());
        for (ty, null) in fields {
            let found = ty.as_ref().and_then(|ty| {
                self.nulls
                    .iter()
                    .zip(&taken)
                    .position(|((t, _), used)| !used && t.as_ref() == Some(ty))
            });
            let at = match found {
                Some(at) => at,
                None => {
                    self.nulls.push((ty, null));
                    taken.push(false);
                    self.nulls.len() - 1
                }
            };
            taken[at] = true;
            out.push(self.first + at);
        }
        out
    }

    /// A typed NULL for each field after the root's, in order.
    pub(super) fn nulls(&self) -> impl Iterator<Item = &str> {
        self.nulls.iter().map(|(_, null)| null.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(ty: &str) -> (Option<String>, String) {
        (Some(ty.to_owned()), format!("NULL::{ty}"))
    }

    fn own(null: &str) -> (Option<String>, String) {
        (None, null.to_owned())
    }

    #[test]
    fn columns_of_one_type_share_fields_across_branches_never_within_one() {
        let mut slots = Slots::new(7);
        let a = slots.place(vec![shared("bigint"), shared("text"), shared("bigint")]);
        assert_eq!(a, [7, 8, 9]);
        // A second branch reuses a bigint and a text field, and adds an int field.
        let b = slots.place(vec![shared("text"), shared("integer"), shared("bigint")]);
        assert_eq!(b, [8, 10, 7]);
        // Unshared columns take new fields, consecutive when they come first.
        let c = slots.place(vec![
            own("NULL::record[]"),
            own("NULL::int8"),
            shared("text"),
        ]);
        assert_eq!(c, [11, 12, 8]);
        assert_eq!(slots.width(), 13);
        let nulls: Vec<&str> = slots.nulls().collect();
        assert_eq!(
            nulls,
            [
                "NULL::bigint",
                "NULL::text",
                "NULL::bigint",
                "NULL::integer",
                "NULL::record[]",
                "NULL::int8"
            ]
        );
    }
}
