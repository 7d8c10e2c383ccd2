//! TODO(telemetry)
