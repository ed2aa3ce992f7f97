//! The hash maps and sets keyed by row keys (parent keys of a batch, primary keys of
//! an identity map, type ids of the caches).
//!
//! Every lazy load, batch and identity-map lookup hashes keys, so the hasher is on the
//! hot path of every loading strategy: with the standard library's SipHash, hashing
//! was 17% of the client's instructions on the request workload W4
//! (docs/BENCHMARKS.md). These maps use foldhash instead, several times cheaper for
//! integer and short string keys. Its seed is random per process, so the layout of a
//! map cannot be predicted from outside; it is not a cryptographic hash, and none of
//! these maps holds more keys than one statement returned or one session loaded.

use std::collections::{HashMap, HashSet};

/// A hash map keyed by row keys.
pub type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set of row keys.
pub type KeySet<K> = HashSet<K, foldhash::fast::RandomState>;

/// An empty [`KeyMap`] with room for `capacity` entries.
pub fn key_map<K, V>(capacity: usize) -> KeyMap<K, V> {
    HashMap::with_capacity_and_hasher(capacity, Default::default())
}

/// An empty [`KeySet`] with room for `capacity` keys.
pub fn key_set<K>(capacity: usize) -> KeySet<K> {
    HashSet::with_capacity_and_hasher(capacity, Default::default())
}
