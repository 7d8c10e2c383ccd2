//! Kubernetes pod discovery (placeholder; filled below).
mod metrics;
mod pod;
mod selector;

pub use metrics::Metrics;
pub use selector::{FieldSelector, LabelSelector, POD_FIELDS, PodFields};
pub use pod::sanitize_label_name;
