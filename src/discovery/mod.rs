//! TODO(discovery)
