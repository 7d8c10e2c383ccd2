//! Running compiled rules over a label set: Prometheus's `relabel()`, one action at a time.
//!
//! Per rule, everything that does not depend on the labels is worked out once in [`compile`]:
//! the parsed templates, whether the regex is the match-everything `(.*)` (then no regex runs),
//! which parts of a match the templates need (nothing, the whole match, or groups), and whether
//! a later `labelmap` needs Go's label order kept.
//!
//! Per call, strings are built in a per-thread scratch (joined source values, expanded target
//! and value, match records of the last [`LOCATIONS_KEPT`] regexes with groups), so a call that
//! changes nothing allocates nothing.

use std::cell::RefCell;
use std::fmt::Write as _;

use md5::{Digest, Md5};

use super::template::Template;
use super::validate::is_valid_label_name;
use super::{Action, Regex, RelabelConfig};
use crate::labels::LabelsBuilder;

/// One rule, compiled.
#[derive(Clone, Debug)]
pub(super) struct Rule {
    action: Action,
    sources: Box<[String]>,
    separator: String,
    regex: Regex,
    /// The regex is `(.*)`: every value matches, groups 0 and 1 are the value, no other group.
    match_all: bool,
    modulus: u64,
    target_raw: String,
    target: Template,
    /// The target expands to the same name for every match, and that name is valid.
    target_fixed: Option<String>,
    replacement_raw: String,
    replacement: Template,
    /// Prometheus's fast path for `replace`: no `$` in target or replacement, default regex.
    literal_replace: bool,
    need: Need,
    /// Identifies this rule's regex in the per-thread match-record cache.
    id: u64,
    /// A `labelmap` comes later: keep the order of labels set, as Go's builder does.
    track: bool,
}

/// What of a match the templates of a `replace` need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Only whether it matched.
    Nothing,
    /// Group 0.
    Whole,
    /// Numbered groups.
    Groups,
}

/// Per-thread buffers reused across calls.
#[derive(Default)]
struct Scratch {
    /// Source values joined by the separator (when there are two or more).
    joined: String,
    /// An expanded target label name.
    name: String,
    /// A new value.
    value: String,
    /// Names set since the call began, in Go's builder order (only kept when `track`).
    touched: Vec<String>,
    /// `labelmap`'s pending (new name, value, order key) triples.
    pending: Vec<(String, String, OrderKey)>,
    /// Match records of recently used `replace` regexes, by rule id (most recent last), so a
    /// match with groups allocates nothing in steady state.
    locations: Vec<(u64, regex::CaptureLocations)>,
}

/// How many match records a thread keeps.
const LOCATIONS_KEPT: usize = 32;

/// Source of rule ids.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Where a label comes in Go's `Builder.Range`: first the labels present on entry and not set
/// since, in name order; then the labels set since, in the builder's order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum OrderKey {
    Entry(String),
    Set(usize),
}

/// Scratch strings longer than this are dropped after a call, so one huge value does not pin
/// memory on a thread for good.
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

pub(super) fn compile(configs: &[RelabelConfig]) -> Vec<Rule> {
    let last_labelmap = configs.iter().rposition(|c| c.action == Action::LabelMap);
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let names = &c.regex.names;
            let target = Template::parse(&c.target_label, names);
            let replacement = Template::parse(&c.replacement, names);
            let max_group = target.max_group().max(replacement.max_group());
            let need = match max_group {
                None => Need::Nothing,
                Some(0) => Need::Whole,
                Some(_) => Need::Groups,
            };
            let target_fixed = target
                .constant()
                .filter(|t| is_valid_label_name(t))
                .map(str::to_owned);
            Rule {
                action: c.action,
                sources: c.source_labels.clone().into_boxed_slice(),
                separator: c.separator.clone(),
                regex: c.regex.clone(),
                match_all: c.regex.source == "(.*)",
                modulus: c.modulus,
                target_raw: c.target_label.clone(),
                target,
                target_fixed,
                replacement_raw: c.replacement.clone(),
                replacement,
                literal_replace: c.regex.is_default
                    && !c.target_label.contains('$')
                    && !c.replacement.contains('$'),
                need,
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                track: last_labelmap.is_some_and(|last| i < last),
            }
        })
        .collect()
}

pub(super) fn run(rules: &[Rule], labels: &mut LabelsBuilder) -> bool {
    if rules.is_empty() {
        return true;
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let keep = run_with(rules, labels, &mut scratch);
            scratch.trim();
            keep
        }
        // Unreachable (nothing here calls back into relabeling), but never panic.
        Err(_) => run_with(rules, labels, &mut Scratch::default()),
    })
}

fn run_with(rules: &[Rule], labels: &mut LabelsBuilder, s: &mut Scratch) -> bool {
    s.touched.clear();
    rules.iter().all(|rule| rule.apply(labels, s))
}

impl Scratch {
    fn trim(&mut self) {
        for buf in [&mut self.joined, &mut self.name, &mut self.value] {
            if buf.capacity() > SCRATCH_KEEP_BYTES {
                *buf = String::new();
            }
        }
        self.touched.clear();
        self.pending.clear();
    }
}

/// The groups of one match, as far as the templates need them.
enum Groups<'v> {
    /// The match of `(.*)`: groups 0 and 1 are the value.
    All(&'v str),
    None,
    Whole(&'v str),
    Located(&'v str, &'v regex::CaptureLocations),
}

impl<'v> Groups<'v> {
    fn get(&self, i: usize) -> Option<&'v str> {
        match self {
            Groups::All(v) => (i <= 1).then_some(*v),
            Groups::None => None,
            Groups::Whole(v) => (i == 0).then_some(*v),
            Groups::Located(v, locs) => locs.get(i).and_then(|(a, b)| v.get(a..b)),
        }
    }
}

/// What a rule does to one label once its value has been worked out.
enum Edit {
    None,
    /// Set the target (the fixed name, or the expanded one in `Scratch::name`) to
    /// `Scratch::value`; an empty value removes it.
    Target {
        expanded: bool,
    },
}

impl Rule {
    /// Applies the rule; false means drop the label set.
    fn apply(&self, labels: &mut LabelsBuilder, s: &mut Scratch) -> bool {
        match self.action {
            Action::LabelMap => {
                self.label_map(labels, s);
                return true;
            }
            Action::LabelDrop | Action::LabelKeep => {
                let keep_matching = self.action == Action::LabelKeep;
                labels.retain(|name, _| self.is_match(name) == keep_matching);
                if self.track {
                    s.touched.retain(|n| labels.get(n).is_some());
                }
                return true;
            }
            _ => {}
        }

        let Scratch {
            joined,
            name,
            value,
            touched,
            locations,
            ..
        } = s;
        let val: &str = match &*self.sources {
            [] => "",
            [one] => labels.get(one).unwrap_or(""),
            many => {
                joined.clear();
                for (i, source) in many.iter().enumerate() {
                    if i > 0 {
                        joined.push_str(&self.separator);
                    }
                    joined.push_str(labels.get(source).unwrap_or(""));
                }
                joined
            }
        };

        let edit = match self.action {
            Action::Drop => return !self.is_match(val),
            Action::Keep => return self.is_match(val),
            Action::DropEqual => return labels.get(&self.target_raw).unwrap_or("") != val,
            Action::KeepEqual => return labels.get(&self.target_raw).unwrap_or("") == val,
            Action::HashMod => {
                if self.modulus == 0 {
                    // Rejected by validation; never divide by zero.
                    return true;
                }
                let hash = Md5::digest(val.as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&hash[8..16]);
                value.clear();
                let _ = write!(value, "{}", u64::from_be_bytes(tail) % self.modulus);
                Edit::Target { expanded: false }
            }
            Action::Lowercase => {
                value.clear();
                value.extend(val.chars().map(go_to_lower));
                Edit::Target { expanded: false }
            }
            Action::Uppercase => {
                value.clear();
                value.extend(val.chars().map(go_to_upper));
                Edit::Target { expanded: false }
            }
            Action::Replace => self.replace(val, name, value, locations),
            Action::LabelMap | Action::LabelDrop | Action::LabelKeep => Edit::None,
        };

        let Edit::Target { expanded } = edit else {
            return true;
        };
        let target = if expanded {
            name.as_str()
        } else {
            // hashmod, lowercase, uppercase and the literal replace use the label as written.
            self.target_raw.as_str()
        };
        let track = self.track.then_some(touched);
        set(labels, target, value.as_str(), track);
        true
    }

    fn is_match(&self, s: &str) -> bool {
        self.match_all || self.regex.compiled.is_match(s)
    }

    /// Prometheus's `replace`: on a match, expand the target and the replacement; skip an
    /// invalid target; an empty result removes the target.
    fn replace(
        &self,
        val: &str,
        name: &mut String,
        value: &mut String,
        locations: &mut Vec<(u64, regex::CaptureLocations)>,
    ) -> Edit {
        if val.is_empty() && self.literal_replace {
            value.clear();
            value.push_str(&self.replacement_raw);
            return Edit::Target { expanded: false };
        }
        let groups = if self.match_all {
            Groups::All(val)
        } else {
            let re = &self.regex.compiled;
            let found = match self.need {
                Need::Nothing => re.is_match(val).then_some(Groups::None),
                Need::Whole => re.find(val).map(|m| Groups::Whole(m.as_str())),
                Need::Groups => {
                    let locs = self.locations(locations);
                    re.captures_read(locs, val)
                        .map(|_| Groups::Located(val, &*locs))
                }
            };
            let Some(groups) = found else {
                return Edit::None;
            };
            groups
        };
        let group = |i| groups.get(i);
        name.clear();
        match &self.target_fixed {
            Some(fixed) => name.push_str(fixed),
            None => {
                if self.target.constant().is_some() {
                    // A constant that is not a valid name.
                    return Edit::None;
                }
                self.target.expand(name, group);
                if !is_valid_label_name(name) {
                    return Edit::None;
                }
            }
        }
        value.clear();
        self.replacement.expand(value, group);
        Edit::Target { expanded: true }
    }

    /// This rule's match record from the per-thread cache (made on first use).
    fn locations<'s>(
        &self,
        cache: &'s mut Vec<(u64, regex::CaptureLocations)>,
    ) -> &'s mut regex::CaptureLocations {
        match cache.iter().position(|(id, _)| *id == self.id) {
            Some(at) if at + 1 == cache.len() => {}
            Some(at) => {
                let entry = cache.remove(at);
                cache.push(entry);
            }
            None => {
                if cache.len() >= LOCATIONS_KEPT {
                    cache.remove(0);
                }
                cache.push((self.id, self.regex.compiled.capture_locations()));
            }
        }
        let last = cache.len() - 1;
        &mut cache[last].1
    }

    /// Prometheus's `labelmap`: every label whose name matches is copied to the name the
    /// replacement makes of it (Go's `ReplaceAllString`), in Go's builder order.
    fn label_map(&self, labels: &mut LabelsBuilder, s: &mut Scratch) {
        s.pending.clear();
        for label in labels.iter() {
            if !self.is_match(label.name) {
                continue;
            }
            let mut new_name = String::new();
            self.replace_all(label.name, &mut new_name);
            let key = match s.touched.iter().position(|t| t == label.name) {
                Some(at) => OrderKey::Set(at),
                None => OrderKey::Entry(label.name.to_owned()),
            };
            s.pending.push((new_name, label.value.to_owned(), key));
        }
        if s.pending.is_empty() {
            return;
        }
        s.pending.sort_by(|a, b| a.2.cmp(&b.2));
        let mut pending = std::mem::take(&mut s.pending);
        for (new_name, value, _) in &pending {
            set(
                labels,
                new_name,
                value,
                self.track.then_some(&mut s.touched),
            );
        }
        pending.clear();
        s.pending = pending;
    }

    /// Go's `ReplaceAllString(src, replacement)`.
    fn replace_all(&self, src: &str, out: &mut String) {
        if self.match_all {
            self.replacement.expand(out, |i| (i <= 1).then_some(src));
            return;
        }
        let mut last = 0;
        for caps in self.regex.compiled.captures_iter(src) {
            let Some(m) = caps.get(0) else { continue };
            out.push_str(&src[last..m.start()]);
            self.replacement
                .expand(out, |i| caps.get(i).map(|g| g.as_str()));
            last = m.end();
        }
        out.push_str(&src[last..]);
    }
}

/// Go's `Builder.Set` (an empty value is `Del`), keeping the builder order when asked.
fn set(labels: &mut LabelsBuilder, name: &str, value: &str, touched: Option<&mut Vec<String>>) {
    if value.is_empty() {
        labels.remove(name);
        if let Some(touched) = touched {
            touched.retain(|n| n != name);
        }
        return;
    }
    if labels.get(name) != Some(value) {
        labels.set(name, value);
    }
    if let Some(touched) = touched
        && !touched.iter().any(|n| n == name)
    {
        touched.push(name.to_owned());
    }
}

/// Go's `unicode.ToLower`: the simple (one character) mapping.
fn go_to_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        // Only U+0130 (İ) has a longer full mapping; its simple one is 'i'.
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

/// Go's `unicode.ToUpper`: the simple (one character) mapping.
fn go_to_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        // Characters whose full mapping is longer (ß, ŉ, ﬀ, Greek with ypogegrammeni ...):
        // the simple mapping is the character itself, except for these Greek letters, which map
        // to their titlecase form.
        _ => match c {
            '\u{1F80}'..='\u{1F87}' | '\u{1F90}'..='\u{1F97}' | '\u{1FA0}'..='\u{1FA7}' => {
                char::from_u32(c as u32 + 8).unwrap_or(c)
            }
            '\u{1FB3}' => '\u{1FBC}',
            '\u{1FC3}' => '\u{1FCC}',
            '\u{1FF3}' => '\u{1FFC}',
            _ => c,
        },
    }
}
