//! TODO(web)
