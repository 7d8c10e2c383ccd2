//! TODO(remote)
