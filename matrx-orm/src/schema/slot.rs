//! The fields that hold a loaded relation on a model instance.
//!
//! A slot is set at most once through a shared reference, so relations can be attached
//! to instances that are already shared (`Arc`), by any loading strategy. "Not loaded"
//! and "loaded, empty (or NULL)" are different states.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Serialize, Serializer};

/// A field type that holds a loaded relation to `T`.
pub trait Slot<T>: Default + Send + Sync {
    /// What a load of the relation returns.
    type Value: Clone + Send + Sync;

    /// Whether the relation is loaded.
    fn is_loaded(&self) -> bool;

    /// Builds the value from the target rows that belong to one parent, in order.
    fn value_from(targets: Vec<Arc<T>>) -> Self::Value;

    /// Builds the value from borrowed target rows: what [`value_from`](Slot::value_from)
    /// builds, without a vector when the value needs none (a to-one slot).
    fn value_from_slice(targets: &[Arc<T>]) -> Self::Value {
        Self::value_from(targets.to_vec())
    }

    /// The loaded value, if any.
    fn loaded_value(&self) -> Option<Self::Value>;

    /// Stores the value if the slot is not loaded yet; returns whether it was stored.
    fn fill(&self, value: Self::Value) -> bool;

    /// Appends the loaded targets (nothing if not loaded) to `out`.
    fn loaded_targets(&self, out: &mut Vec<Arc<T>>);

    /// Forgets the loaded value.
    fn reset(&mut self);
}

/// A to-one relation field: not loaded, loaded and NULL, or loaded with a target.
///
/// ```
/// use std::sync::Arc;
/// use matrx_orm::{One, Slot};
///
/// let customer: One<String> = One::default();
/// assert!(!customer.is_loaded());
/// customer.fill(Some(Arc::new("Ann".to_string())));
/// assert_eq!(customer.get().map(String::as_str), Some("Ann"));
/// ```
pub struct One<T>(OnceLock<Option<Arc<T>>>);

impl<T> One<T> {
    /// A slot loaded with `value` (`None`: loaded, and the relation is NULL).
    pub fn loaded(value: Option<Arc<T>>) -> Self {
        One(OnceLock::from(value))
    }

    /// The target if loaded and present; `None` if not loaded or NULL
    /// (use [`state`](Self::state) to tell those apart).
    pub fn get(&self) -> Option<&T> {
        self.0.get().and_then(|v| v.as_deref())
    }

    /// `None` if not loaded, `Some(None)` if loaded and NULL, `Some(Some(_))` otherwise.
    pub fn state(&self) -> Option<Option<&Arc<T>>> {
        self.0.get().map(Option::as_ref)
    }
}

impl<T: Send + Sync> Slot<T> for One<T> {
    type Value = Option<Arc<T>>;

    fn is_loaded(&self) -> bool {
        self.0.get().is_some()
    }

    fn value_from(targets: Vec<Arc<T>>) -> Self::Value {
        targets.into_iter().next()
    }

    fn value_from_slice(targets: &[Arc<T>]) -> Self::Value {
        targets.first().cloned()
    }

    fn loaded_value(&self) -> Option<Self::Value> {
        self.0.get().cloned()
    }

    fn fill(&self, value: Self::Value) -> bool {
        self.0.set(value).is_ok()
    }

    fn loaded_targets(&self, out: &mut Vec<Arc<T>>) {
        if let Some(Some(t)) = self.0.get() {
            out.push(t.clone());
        }
    }

    fn reset(&mut self) {
        self.0.take();
    }
}

impl<T> Default for One<T> {
    fn default() -> Self {
        One(OnceLock::new())
    }
}

impl<T> Clone for One<T> {
    fn clone(&self) -> Self {
        One(self.0.clone())
    }
}

impl<T: fmt::Debug> fmt::Debug for One<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get() {
            None => f.write_str("NotLoaded"),
            Some(None) => f.write_str("Null"),
            Some(Some(v)) => fmt::Debug::fmt(v, f),
        }
    }
}

impl<T: PartialEq> PartialEq for One<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Serializes the target, or `null` when not loaded or NULL. Add
/// `#[serde(skip_serializing_if = "One::is_not_loaded")]` to leave an unloaded
/// relation out.
impl<T: Serialize> Serialize for One<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.get() {
            Some(Some(v)) => v.serialize(serializer),
            _ => serializer.serialize_none(),
        }
    }
}

impl<T> One<T> {
    /// Whether the relation is not loaded (for `skip_serializing_if`).
    pub fn is_not_loaded(&self) -> bool {
        self.0.get().is_none()
    }
}

/// A to-many relation field: not loaded, or loaded with a list (perhaps empty).
///
/// ```
/// use std::sync::Arc;
/// use matrx_orm::{Many, Slot};
///
/// let tags: Many<String> = Many::default();
/// assert!(tags.get().is_none());
/// tags.fill(vec![Arc::new("new".to_string())]);
/// assert_eq!(tags.get().map(|t| t.len()), Some(1));
/// ```
pub struct Many<T>(OnceLock<Vec<Arc<T>>>);

impl<T> Many<T> {
    /// A slot loaded with `items`.
    pub fn loaded(items: Vec<Arc<T>>) -> Self {
        Many(OnceLock::from(items))
    }

    /// The loaded list, or `None` if not loaded.
    pub fn get(&self) -> Option<&[Arc<T>]> {
        self.0.get().map(Vec::as_slice)
    }

    /// The loaded items; nothing if not loaded (check [`get`](Self::get) to tell).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.get().into_iter().flatten().map(|a| &**a)
    }

    /// Whether the relation is not loaded (for `skip_serializing_if`).
    pub fn is_not_loaded(&self) -> bool {
        self.0.get().is_none()
    }
}

impl<T: Send + Sync> Slot<T> for Many<T> {
    type Value = Vec<Arc<T>>;

    fn is_loaded(&self) -> bool {
        self.0.get().is_some()
    }

    fn value_from(targets: Vec<Arc<T>>) -> Self::Value {
        targets
    }

    fn loaded_value(&self) -> Option<Self::Value> {
        self.0.get().cloned()
    }

    fn fill(&self, value: Self::Value) -> bool {
        self.0.set(value).is_ok()
    }

    fn loaded_targets(&self, out: &mut Vec<Arc<T>>) {
        if let Some(items) = self.0.get() {
            out.extend(items.iter().cloned());
        }
    }

    fn reset(&mut self) {
        self.0.take();
    }
}

impl<T> Default for Many<T> {
    fn default() -> Self {
        Many(OnceLock::new())
    }
}

impl<T> Clone for Many<T> {
    fn clone(&self) -> Self {
        Many(self.0.clone())
    }
}

impl<T: fmt::Debug> fmt::Debug for Many<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get() {
            None => f.write_str("NotLoaded"),
            Some(v) => f.debug_list().entries(v.iter()).finish(),
        }
    }
}

impl<T: PartialEq> PartialEq for Many<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Serializes the list, or `null` when not loaded.
impl<T: Serialize> Serialize for Many<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.get() {
            Some(v) => v.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }
}
