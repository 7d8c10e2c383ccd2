//! TODO(scrape)
