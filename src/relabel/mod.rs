//! The relabel engine: Prometheus's relabeling, to the letter.
//!
//! PUBLIC FACE (fixed; config, scrape and remote code against it):
//! - [`RelabelConfig`]: one rule as written in YAML (serde), with Prometheus's defaults.
//!   Deserializing compiles the regex, so a bad regex is reported with file and line.
//!   [`RelabelConfig::validate`] checks the combination of fields (as Prometheus does at load).
//! - [`Relabeler`]: a compiled list of rules. [`Relabeler::process`] edits a label set in place
//!   and says whether to keep it.

use serde::Deserialize;

use crate::labels::LabelsBuilder;

/// A relabel action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// An anchored regular expression, as Prometheus compiles it: `^(?s:<expr>)$`.
#[derive(Clone, Debug)]
pub struct Regex {
    /// The expression as written.
    pub source: String,
    compiled: regex::Regex,
}

/// One relabel rule as configured. Field names and defaults are Prometheus's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default = "Regex::default_match_all")]
    pub regex: Regex,
    #[serde(default)]
    pub modulus: u64,
    #[serde(default)]
    pub target_label: String,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

/// A compiled list of rules.
#[derive(Clone, Debug, Default)]
pub struct Relabeler {
    rules: Vec<RelabelConfig>,
}

fn default_separator() -> String {
    ";".to_owned()
}

fn default_replacement() -> String {
    "$1".to_owned()
}

impl Regex {
    /// Compiles `source` anchored at both ends.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let compiled = regex::Regex::new(&format!("^(?s:{source})$"))?;
        Ok(Regex {
            source: source.to_owned(),
            compiled,
        })
    }

    /// The default `(.*)`.
    pub fn default_match_all() -> Self {
        let compiled = regex::Regex::new("^(?s:(.*))$").unwrap_or_else(|_| unreachable!());
        Regex {
            source: "(.*)".to_owned(),
            compiled,
        }
    }

    /// The compiled, anchored expression.
    pub fn compiled(&self) -> &regex::Regex {
        &self.compiled
    }
}

impl<'de> Deserialize<'de> for Regex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Regex::new(&source)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex {source:?}: {e}")))
    }
}

impl RelabelConfig {
    /// Checks the combination of fields as Prometheus does at load; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        todo!("relabel: validate")
    }
}

impl Relabeler {
    /// Compiles validated rules.
    pub fn new(rules: &[RelabelConfig]) -> Self {
        Relabeler {
            rules: rules.to_vec(),
        }
    }

    /// Whether there are no rules (callers skip work then).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies the rules in order. Returns false when a rule drops the label set (the builder's
    /// contents are then unspecified).
    pub fn process(&self, labels: &mut LabelsBuilder) -> bool {
        let _ = labels;
        todo!("relabel: process")
    }
}
