//! net (being written).
