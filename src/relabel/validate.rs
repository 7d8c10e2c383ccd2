//! Prometheus's checks on a rule: `Config.Validate` and what its YAML readers check, with the
//! same order and messages.

use std::sync::LazyLock;

use serde::{Deserialize, Deserializer};

use super::{Action, RelabelConfig};

/// Whether `name` is a valid label name under the legacy rule `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Prometheus's `relabelTarget`: a label name in which `$1`, `${1}`, `$name` may stand for
/// characters (Go's `\w` is ASCII).
fn is_valid_target_template(s: &str) -> bool {
    static RE: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(
            r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$",
        )
        .ok()
    });
    RE.as_ref().is_some_and(|re| re.is_match(s))
}

pub(super) fn validate(c: &RelabelConfig) -> Result<(), String> {
    use Action::*;
    let a = c.action;
    // Checked by Prometheus while reading `source_labels`; repeated here for rules built in code.
    if let Some(bad) = c.source_labels.iter().find(|n| !is_valid_label_name(n)) {
        return Err(format!("{} is not a valid label name", go_quote(bad)));
    }
    if c.modulus == 0 && a == HashMod {
        return Err("relabel configuration for hashmod requires non-zero modulus".to_owned());
    }
    let needs_target = matches!(
        a,
        Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
    );
    if needs_target && c.target_label.is_empty() {
        return Err(format!(
            "relabel configuration for {a} action requires 'target_label' value"
        ));
    }
    let invalid_target = || {
        format!(
            "{} is invalid 'target_label' for {a} action",
            go_quote(&c.target_label)
        )
    };
    let has_var = c.target_label.contains('$');
    if a == Replace && !has_var && !is_valid_label_name(&c.target_label) {
        return Err(invalid_target());
    }
    if a == Replace && has_var && !is_valid_target_template(&c.target_label) {
        return Err(invalid_target());
    }
    let plain_target = matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual);
    if plain_target && !is_valid_label_name(&c.target_label) {
        return Err(invalid_target());
    }
    if plain_target && c.replacement != "$1" {
        return Err(format!("'replacement' can not be set for {a} action"));
    }
    if a == LabelMap && !is_valid_target_template(&c.replacement) {
        return Err(format!(
            "{} is invalid 'replacement' for {a} action",
            go_quote(&c.replacement)
        ));
    }
    if a == HashMod && !is_valid_label_name(&c.target_label) {
        return Err(invalid_target());
    }
    let other_defaults = c.modulus == 0 && c.separator == ";" && c.replacement == "$1";
    if matches!(a, DropEqual | KeepEqual) && !(c.regex.is_default && other_defaults) {
        return Err(format!(
            "{a} action requires only 'source_labels' and `target_label`, and no other fields"
        ));
    }
    if matches!(a, LabelDrop | LabelKeep)
        && !(c.source_labels.is_empty() && c.target_label.is_empty() && other_defaults)
    {
        return Err(format!(
            "{a} action requires only 'regex', and no other fields"
        ));
    }
    Ok(())
}

/// Go's `%q`: a double-quoted string with Go escapes, so messages read as Prometheus's.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0C' => out.push_str("\\f"),
            '\x0B' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7F' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string field: any scalar as its text; null is the empty string (yaml.v2's zero value).
pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// `modulus`: null is 0.
pub(super) fn modulus<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or_default())
}

/// `source_labels`: a list of valid label names; null is none.
pub(super) fn label_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
    if let Some(bad) = names.iter().find(|n| !is_valid_label_name(n)) {
        return Err(serde::de::Error::custom(format!(
            "{} is not a valid label name",
            go_quote(bad)
        )));
    }
    Ok(names)
}
