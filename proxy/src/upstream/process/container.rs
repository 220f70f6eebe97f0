//! Container providers (placeholder while being written).
