//! A growable array in fixed-size pages, for per-series tables that may hold millions of
//! entries.
//!
//! Invariants:
//! 1. Growing adds one page and never moves the entries already there, so a table never holds
//!    two copies of itself (a `Vec` that doubles does, while it copies: half again its size
//!    on top, at the moment the table is largest), and its room beyond its length is less
//!    than one page.
//! 2. Index `i` is entry `i % PAGE` of page `i / PAGE`; indices below [`Pages::len`] are
//!    valid.

/// Entries per page.
pub const PAGE: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub struct Pages<T> {
    pages: Vec<Box<[T]>>,
    len: usize,
}

impl<T> Default for Pages<T> {
    fn default() -> Self {
        Pages {
            pages: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Default> Pages<T> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entry `i`, if `i < len`.
    pub fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        self.pages.get(i / PAGE)?.get(i % PAGE)
    }

    /// Entry `i`, if `i < len`.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len {
            return None;
        }
        self.pages.get_mut(i / PAGE)?.get_mut(i % PAGE)
    }

    /// Adds `value` at the end; returns its index.
    pub fn push(&mut self, value: T) -> usize {
        if self.len == self.pages.len() * PAGE {
            self.pages.push((0..PAGE).map(|_| T::default()).collect());
        }
        let i = self.len;
        self.len += 1;
        if let Some(slot) = self.get_mut(i) {
            *slot = value;
        }
        i
    }

    /// The entries in index order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + Clone {
        self.pages.iter().flat_map(|p| p.iter()).take(self.len)
    }

    /// The entries in index order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        let len = self.len;
        self.pages.iter_mut().flat_map(|p| p.iter_mut()).take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_pages_and_keeps_every_entry_in_place() {
        let mut p: Pages<u64> = Pages::default();
        assert!(p.is_empty() && p.get(0).is_none());
        let first = p.push(7);
        let at = p.get(first).map(|v| v as *const u64);
        for i in 1..(3 * PAGE as u64 + 5) {
            assert_eq!(p.push(i), i as usize);
        }
        // The first page did not move while the table grew.
        assert_eq!(p.get(first).map(|v| v as *const u64), at);
        assert_eq!(p.len(), 3 * PAGE + 5);
        assert_eq!(p.pages.len(), 4);
        assert_eq!(p.get(PAGE + 1), Some(&(PAGE as u64 + 1)));
        assert_eq!(p.get(p.len()), None);
        if let Some(v) = p.get_mut(5) {
            *v = 50;
        }
        assert_eq!(p.iter().nth(5), Some(&50));
        assert_eq!(p.iter().count(), p.len());
        p.iter_mut().for_each(|v| *v += 1);
        assert_eq!(p.get(0), Some(&8));
    }
}
