//! Content-addressed blob store (being written).

use serde::{Deserialize, Serialize};

/// The store (placeholder).
#[derive(Clone, Debug)]
pub struct BlobStore {}

/// Store counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {}

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {}
