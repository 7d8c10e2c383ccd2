//! The relabel engine: Prometheus's relabeling, to the letter.
//!
//! PUBLIC FACE (fixed; config, scrape and remote code against it):
//! - [`RelabelConfig`]: one rule as written in YAML (serde), with Prometheus's defaults.
//!   Deserializing compiles the regex, so a bad regex is reported with file and line.
//!   [`RelabelConfig::validate`] checks the combination of fields (as Prometheus does at load).
//! - [`Relabeler`]: a compiled list of rules. [`Relabeler::process`] edits a label set in place
//!   and says whether to keep it.
//!
//! Also public: [`Action::as_str`] (and `Display`), [`is_valid_label_name`] (the name rule the
//! engine and validation use, for callers that check names after relabeling).
//!
//! # What "to the letter" means here
//!
//! The model is Prometheus 3.x `model/relabel/relabel.go` with the legacy name rule
//! (`metric_name_validation_scheme: legacy`, the only one our text-format parser and remote
//! write 1.0 carry; it is also Prometheus 2.x's rule):
//! - regexes are anchored as `^(?s:<regex>)$` (3.x; 2.x used `^(?:...)$`, so `.` did not match a
//!   newline) and read with Go's syntax and meaning (ASCII `\d \w \s \b`, `\Q..\E`, octal, `$1x`
//!   is group `1x`...): see `goregex.rs` for the rewrite to the `regex` crate;
//! - `$1`, `${1}`, `$name` expand as Go's `regexp.Expand` (see `template.rs`);
//! - YAML: defaults `separator: ";"`, `regex: "(.*)"`, `replacement: "$1"`, `action: replace`;
//!   an explicit null gives the zero value (`regex:` alone is the empty regex), as yaml.v2 does;
//!   actions are case-insensitive; source label names are checked when read;
//! - [`RelabelConfig::validate`] runs Prometheus's `Validate` checks in its order, with its
//!   messages;
//! - [`Relabeler::process`] runs each action as Prometheus's `relabel()`; `labelmap` visits labels
//!   in Go's builder order (labels present on entry in name order, then labels set since, in the
//!   order Go's builder keeps them), which decides the winner when two names map to one.
//!
//! Known differences: Prometheus's `PopulateLabels` sets `job`, `__scheme__`... on its builder
//! before relabeling, so a `labelmap` collision involving them may order differently here (the
//! caller's builder is taken as "present on entry"). `source_labels: []` and no
//! `source_labels` are the same here; for `labeldrop`/`labelkeep` Prometheus rejects the former.
//!
//! # Invariants of [`Relabeler::process`]
//! 1. It never panics, whatever the rules (validated or not) and labels.
//! 2. It never leaves an empty value (setting an empty value removes the label) and names stay
//!    unique (the builder keeps them so).
//! 3. Only `labelmap` can create a name that is not a valid label name (as in Prometheus, e.g.
//!    `${1}` expanding to nothing); callers check names after relabeling as Prometheus does
//!    (targets: dropped with a reason; scrapes: the scrape fails).
//! 4. Once a thread has warmed up, a rule list that changes nothing allocates nothing, except a
//!    `labelmap` that matches some name (it builds the new names before setting them).

mod goregex;
mod process;
mod template;
#[cfg(test)]
mod tests;
mod validate;

use serde::Deserialize;

use crate::labels::LabelsBuilder;

pub use validate::is_valid_label_name;

/// A relabel action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// An anchored regular expression, as Prometheus compiles it: `^(?s:<expr>)$`, with Go's syntax.
#[derive(Clone, Debug)]
pub struct Regex {
    /// The expression as written.
    pub source: String,
    compiled: regex::Regex,
    /// The Go name of each capture group (index 0: the whole match). The compiled regex has
    /// unnamed groups only: Go accepts names (`1x`) that the `regex` crate rejects.
    names: Vec<Option<String>>,
    /// Not configured: the default `(.*)` (Prometheus tells it apart from an explicit `(.*)`).
    is_default: bool,
}

/// One relabel rule as configured. Field names and defaults are Prometheus's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default, deserialize_with = "validate::label_names")]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator", deserialize_with = "validate::string")]
    pub separator: String,
    #[serde(default = "Regex::default_match_all")]
    pub regex: Regex,
    #[serde(default, deserialize_with = "validate::modulus")]
    pub modulus: u64,
    #[serde(default, deserialize_with = "validate::string")]
    pub target_label: String,
    #[serde(default = "default_replacement", deserialize_with = "validate::string")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

/// A compiled list of rules.
#[derive(Clone, Debug, Default)]
pub struct Relabeler {
    rules: Vec<process::Rule>,
}

fn default_separator() -> String {
    ";".to_owned()
}

fn default_replacement() -> String {
    "$1".to_owned()
}

impl Action {
    /// The name as written in YAML (`labelmap`, `keepequal`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    /// Case-insensitive, as Prometheus reads it; null is "relabel action cannot be empty".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Err(serde::de::Error::custom("relabel action cannot be empty"));
        };
        let lower = s.to_lowercase();
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown relabel action {}",
                    validate::go_quote(&s)
                ))
            })
    }
}

/// The `regex` crate pattern for the Go (RE2) pattern `go`, as relabel rules read it
/// (unanchored; capture groups numbered as in `go`), or Go's reason for refusing it. For
/// tools and the fuzz target: whatever this accepts, `regex` compiles.
pub fn translate_go_regex(go: &str) -> Result<String, String> {
    goregex::translate(go).map(|t| t.pattern)
}

impl Regex {
    /// Compiles `source` anchored at both ends, read as Go reads it.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        // Anchor first, then translate: Prometheus pastes the text between the anchors.
        let anchored = format!("^(?s:{source})$");
        let translated = goregex::translate(&anchored).map_err(regex::Error::Syntax)?;
        let compiled = regex::Regex::new(&translated.pattern).map_err(|e| match e {
            // The message quotes our rewritten pattern and draws a caret under it; keep only
            // the reason, which is about the user's text.
            regex::Error::Syntax(text) => {
                let reason = text.lines().last().unwrap_or_default();
                regex::Error::Syntax(reason.trim_start_matches("error: ").to_owned())
            }
            other => other,
        })?;
        Ok(Regex {
            source: source.to_owned(),
            compiled,
            names: translated.names,
            is_default: false,
        })
    }

    /// The default `(.*)`.
    pub fn default_match_all() -> Self {
        use std::sync::LazyLock;
        static DEFAULT: LazyLock<Regex> = LazyLock::new(|| {
            let mut re = Regex::new("(.*)").unwrap_or_else(|_| unreachable!("constant regex"));
            re.is_default = true;
            re
        });
        DEFAULT.clone()
    }

    /// The compiled, anchored expression (capture groups numbered as in the source, unnamed).
    pub fn compiled(&self) -> &regex::Regex {
        &self.compiled
    }
}

impl PartialEq for Regex {
    /// Same source text, same regex (whether written or defaulted).
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Regex {}

impl std::hash::Hash for Regex {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl<'de> Deserialize<'de> for Regex {
    /// A string (or any scalar, as its text); null is the empty regex, as in Prometheus.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = Option::<String>::deserialize(d)?.unwrap_or_default();
        Regex::new(&source).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid regex {}: {}",
                validate::go_quote(&source),
                e
            ))
        })
    }
}

impl RelabelConfig {
    /// Checks the combination of fields as Prometheus does at load; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        validate::validate(self)
    }
}

impl Relabeler {
    /// Compiles validated rules. Rules that fail [`RelabelConfig::validate`] do no harm: they
    /// run as Prometheus would run them, and `hashmod` with modulus 0 does nothing.
    pub fn new(rules: &[RelabelConfig]) -> Self {
        Relabeler {
            rules: process::compile(rules),
        }
    }

    /// Whether there are no rules (callers skip work then).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies the rules in order. Returns false when a rule drops the label set (the builder's
    /// contents are then unspecified).
    pub fn process(&self, labels: &mut LabelsBuilder) -> bool {
        process::run(&self.rules, labels)
    }
}
