//! Reading the log in order, following the writer.
//!
//! Read sequence: find the next segment on disk at or after the one wanted (segments skipped
//! on the way were deleted: report a [`Gap`] with what the deleter recorded) -> check its
//! file header -> announce it ([`Event::Segment`]: decoders reset their state) -> read
//! records up to the segment's known end (for the active segment, the end of its last
//! complete record: a reader never sees a record being written) -> at a trailer or the end
//! of a sealed segment, go on to the next. A record that fails its checks ends the segment
//! for this reader: the rest is reported as a [`Gap`] (reason `Corrupt`), never returned.
//!
//! Memory: one read buffer of [`BUF_CAPACITY`](self) and one record payload at a time.

use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::format::{self, FILE_HEADER_LEN, FRAME_HEADER_LEN, TRAILER_KIND, TRAILER_PAYLOAD_LEN};
use super::log::Shared;
use super::{GapReason, MAX_RECORD_BYTES, Position};

/// Size of a reader's file buffer.
const BUF_CAPACITY: usize = 64 * 1024;

/// Reads records in order. Create one with [`Log::reader`](super::Log::reader).
pub struct Reader {
    shared: Arc<Shared>,
    /// Records before it are marked [`Record::before_start`].
    start: Position,
    /// The segment to look for when none is open.
    next_segment: u64,
    open: Option<OpenSegment>,
    buf: Vec<u8>,
    /// The log's version when this reader last found nothing new.
    seen_version: u64,
}

/// What a reader found next.
#[derive(Debug)]
pub enum Event<'a> {
    /// The reader entered segment `index`; the next record is its first.
    Segment(u64),
    Record(Record<'a>),
    /// Records were skipped: deleted by a cap, damaged, or missing.
    Gap(Gap),
    /// Caught up with the writer; [`Reader::wait`] for more.
    End,
    /// The log was closed and everything was read.
    Closed,
}

/// One record.
#[derive(Debug)]
pub struct Record<'a> {
    pub position: Position,
    /// The position right after it.
    pub end: Position,
    pub kind: u8,
    pub items: u32,
    pub payload: &'a [u8],
    /// It lies before the position the reader was asked to start at (it is read so that a
    /// decoder can rebuild its state).
    pub before_start: bool,
}

/// Records a reader skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub reason: GapReason,
    /// Items in the skipped records, as far as known (the writer's counts; 0 when unknown).
    pub items: u64,
    /// Bytes skipped in a damaged segment (0 for deleted segments).
    pub bytes: u64,
    /// Where the skip began.
    pub at: Position,
}

struct OpenSegment {
    index: u64,
    file: BufReader<File>,
    offset: u64,
    items_read: u64,
    /// A damaged record was met: the rest of the segment is skipped.
    damaged: bool,
}

/// What one step found (owned, so that `next` can lend the payload afterwards).
enum Step {
    Segment(u64),
    Record {
        position: Position,
        end: Position,
        kind: u8,
        items: u32,
    },
    Gap(Gap),
    End,
    Closed,
    Again,
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, start: Position) -> Self {
        let seen_version = shared.lock().version;
        Reader {
            shared,
            start,
            next_segment: start.segment,
            open: None,
            buf: Vec::new(),
            seen_version,
        }
    }

    /// The position of the next record this reader would read, as far as it knows.
    pub fn position(&self) -> Position {
        match &self.open {
            Some(s) => Position {
                segment: s.index,
                offset: s.offset,
            },
            None => Position {
                segment: self.next_segment,
                offset: 0,
            },
        }
    }

    /// The next event, without waiting. I/O errors other than damaged data are returned;
    /// the reader can be asked again.
    pub fn read(&mut self) -> Result<Event<'_>> {
        loop {
            match self.step()? {
                Step::Again => continue,
                Step::Segment(i) => return Ok(Event::Segment(i)),
                Step::Gap(g) => return Ok(Event::Gap(g)),
                Step::End => return Ok(Event::End),
                Step::Closed => return Ok(Event::Closed),
                Step::Record {
                    position,
                    end,
                    kind,
                    items,
                } => {
                    return Ok(Event::Record(Record {
                        position,
                        end,
                        kind,
                        items,
                        payload: &self.buf,
                        before_start: position < self.start,
                    }));
                }
            }
        }
    }

    /// Skips the rest of the open segment (its records made no sense to the caller, e.g. they
    /// do not decode): returns the gap (reason `Corrupt`), `None` when no segment is open.
    pub fn abandon_segment(&mut self) -> Option<Gap> {
        let index = self.open.as_ref()?.index;
        let limit = self
            .shared
            .lock()
            .segments
            .get(&index)
            .map_or(0, |m| m.bytes);
        match self.damaged(limit.max(self.position().offset)) {
            Step::Gap(g) => Some(g),
            _ => None,
        }
    }

    /// Waits until the log changed since this reader last saw [`Event::End`], or `timeout`
    /// passed. Returns whether it changed.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.version == self.seen_version {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = match self.shared.changed.wait_timeout(st, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    fn step(&mut self) -> Result<Step> {
        let Some(seg) = self.open.as_mut() else {
            return self.open_next();
        };
        let index = seg.index;
        let known = {
            let st = self.shared.lock();
            st.segments
                .get(&index)
                .map(|meta| (meta.bytes, st.active == Some(index), st.version))
        };
        let Some((limit, active, version)) = known else {
            return Ok(self.lost_open_segment());
        };
        let Some(seg) = self.open.as_mut() else {
            return Ok(Step::Again);
        };
        if seg.damaged || seg.offset >= limit {
            if active {
                self.seen_version = version;
                return Ok(Step::End);
            }
            self.open = None;
            self.next_segment = index + 1;
            return Ok(Step::Again);
        }
        let path = || format::segment_path(&self.shared.dir, index);
        if limit - seg.offset < FRAME_HEADER_LEN as u64 {
            return Ok(self.damaged(limit));
        }
        let mut head = [0u8; FRAME_HEADER_LEN];
        if let Err(source) = seg.file.read_exact(&mut head) {
            return Err(Error::Read {
                path: path(),
                source,
            });
        }
        let header = match format::parse_frame_header(&head, MAX_RECORD_BYTES) {
            Ok(h) => h,
            Err(_) => return Ok(self.damaged(limit)),
        };
        let total = (FRAME_HEADER_LEN as u64) + u64::from(header.len);
        if seg.offset + total > limit
            || (header.kind == TRAILER_KIND && header.len as usize != TRAILER_PAYLOAD_LEN)
        {
            return Ok(self.damaged(limit));
        }
        self.buf.resize(header.len as usize, 0);
        if let Err(source) = seg.file.read_exact(&mut self.buf) {
            return Err(Error::Read {
                path: path(),
                source,
            });
        }
        if format::check_payload(&header, &self.buf).is_err() {
            return Ok(self.damaged(limit));
        }
        let position = Position {
            segment: index,
            offset: seg.offset,
        };
        seg.offset += total;
        if header.kind == TRAILER_KIND {
            self.open = None;
            self.next_segment = index + 1;
            return Ok(Step::Again);
        }
        seg.items_read += u64::from(header.items);
        Ok(Step::Record {
            position,
            end: Position {
                segment: index,
                offset: seg.offset,
            },
            kind: header.kind,
            items: header.items,
        })
    }

    /// Opens the first segment at or after `next_segment`, reporting deleted ones on the way.
    fn open_next(&mut self) -> Result<Step> {
        let (found, gap) = {
            let st = self.shared.lock();
            let found = st
                .segments
                .range(self.next_segment..)
                .next()
                .map(|(&i, _)| i);
            let Some(index) = found else {
                if st.closed {
                    return Ok(Step::Closed);
                }
                // Nothing to read yet; `wait` returns when a segment appears.
                self.seen_version = st.version;
                return Ok(Step::End);
            };
            let gap = (index > self.next_segment).then(|| {
                let mut items = 0;
                let mut reason = None;
                for (&i, &(n, r)) in st.dropped.range(self.next_segment..index) {
                    // A reader started inside a segment had read its beginning before.
                    let started_inside = i == self.start.segment && self.start.offset > 0;
                    if !started_inside {
                        items += n;
                    }
                    reason.get_or_insert(r);
                }
                Gap {
                    reason: reason.unwrap_or(GapReason::Missing),
                    items,
                    bytes: 0,
                    at: Position {
                        segment: self.next_segment,
                        offset: 0,
                    },
                }
            });
            (index, gap)
        };
        if let Some(gap) = gap {
            self.next_segment = found;
            return Ok(Step::Gap(gap));
        }
        let path = format::segment_path(&self.shared.dir, found);
        let file = match File::open(&path) {
            Ok(f) => f,
            // Deleted since the look-up: look again (the gap is reported then).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.next_segment = found;
                let st = self.shared.lock();
                return Ok(if st.segments.contains_key(&found) {
                    Step::Again
                } else {
                    drop(st);
                    self.next_segment = found + 1;
                    Step::Gap(self.dropped_gap(found, 0))
                });
            }
            Err(source) => return Err(Error::Read { path, source }),
        };
        let mut file = BufReader::with_capacity(BUF_CAPACITY, file);
        let mut header = [0u8; FILE_HEADER_LEN as usize];
        if file.read_exact(&mut header).is_err()
            || format::parse_file_header(&header) != Some(found)
        {
            self.next_segment = found + 1;
            let items = self
                .shared
                .lock()
                .segments
                .get(&found)
                .map_or(0, |m| m.items);
            return Ok(Step::Gap(Gap {
                reason: GapReason::Corrupt,
                items,
                bytes: 0,
                at: Position {
                    segment: found,
                    offset: 0,
                },
            }));
        }
        self.open = Some(OpenSegment {
            index: found,
            file,
            offset: FILE_HEADER_LEN,
            items_read: 0,
            damaged: false,
        });
        Ok(Step::Segment(found))
    }

    /// The open segment was deleted under the reader: report what it had not read yet.
    fn lost_open_segment(&mut self) -> Step {
        let Some(seg) = self.open.take() else {
            return Step::Again;
        };
        self.next_segment = seg.index + 1;
        Step::Gap(self.dropped_gap(seg.index, seg.items_read))
    }

    /// The gap of a deleted segment of which `read` items had been read.
    fn dropped_gap(&self, index: u64, read: u64) -> Gap {
        let st = self.shared.lock();
        let (items, reason) = st
            .dropped
            .get(&index)
            .copied()
            .unwrap_or((0, GapReason::Missing));
        Gap {
            reason,
            items: items.saturating_sub(read),
            bytes: 0,
            at: Position {
                segment: index,
                offset: 0,
            },
        }
    }

    /// The open segment has a damaged record at the reader's offset: skip the rest of it.
    fn damaged(&mut self, limit: u64) -> Step {
        let Some(seg) = self.open.as_mut() else {
            return Step::Again;
        };
        seg.damaged = true;
        let items = self
            .shared
            .lock()
            .segments
            .get(&seg.index)
            .map_or(0, |m| m.items)
            .saturating_sub(seg.items_read);
        Step::Gap(Gap {
            reason: GapReason::Corrupt,
            items,
            bytes: limit - seg.offset,
            at: Position {
                segment: seg.index,
                offset: seg.offset,
            },
        })
    }
}
