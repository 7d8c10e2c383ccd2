//! Kubernetes label and field selectors, parsed at config load and matched against the pods of
//! the shared store (the API server only ever sees `spec.nodeName=<node>`).
//!
//! Label selectors follow apimachinery's `labels.Parse`: comma-separated requirements `key`,
//! `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`,
//! `key>N` and `key<N`. As in Kubernetes, `!=` and `notin` also match pods without the label.
//!
//! Field selectors follow `fields.ParseSelector`: comma-separated `field=value`,
//! `field==value` or `field!=value` (`\,`, `\=` and `\\` escape). Only the pod fields in
//! [`POD_FIELDS`] are supported; others are rejected at load.
//!
//! An empty selector matches every pod.

use std::fmt;

/// The pod fields a field selector may name (matched client-side).
pub const POD_FIELDS: [&str; 5] = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "status.podIP",
];

/// A parsed label selector.
#[derive(Clone, PartialEq, Eq)]
pub struct LabelSelector {
    source: String,
    requirements: Vec<Requirement>,
}

/// A parsed field selector over [`POD_FIELDS`].
#[derive(Clone, PartialEq, Eq)]
pub struct FieldSelector {
    source: String,
    terms: Vec<FieldTerm>,
}

/// The values of a pod's selectable fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodFields<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub node_name: &'a str,
    pub phase: &'a str,
    pub pod_ip: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    field: usize,
    value: String,
    equal: bool,
}

impl LabelSelector {
    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "invalid label selector {text:?}: empty requirement"
                ));
            }
            requirements.push(
                parse_requirement(part)
                    .map_err(|e| format!("invalid label selector {text:?}: {e}"))?,
            );
        }
        Ok(LabelSelector {
            source: text.to_owned(),
            requirements,
        })
    }

    /// Whether a pod with `labels` matches.
    pub fn matches<'a, F>(&self, get: F) -> bool
    where
        F: Fn(&str) -> Option<&'a str>,
    {
        self.requirements.iter().all(|r| {
            let value = get(&r.key);
            match &r.op {
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
                Op::In(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
                Op::NotIn(values) => value.is_none_or(|v| values.iter().all(|x| x != v)),
                Op::Gt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl FieldSelector {
    /// Parses `text`; the error says what is wrong (including an unsupported field).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if text.trim().is_empty() {
            return Ok(FieldSelector {
                source: text.to_owned(),
                terms,
            });
        }
        for part in split_unescaped(text, ',') {
            let (field, value, equal) = if let Some(i) = find_unescaped(&part, "!=") {
                (&part[..i], &part[i + 2..], false)
            } else if let Some(i) = find_unescaped(&part, "==") {
                (&part[..i], &part[i + 2..], true)
            } else if let Some(i) = find_unescaped(&part, "=") {
                (&part[..i], &part[i + 1..], true)
            } else {
                return Err(format!(
                    "invalid field selector {text:?}: {part:?} is not field=value, field==value or field!=value"
                ));
            };
            let field = field.trim();
            let Some(index) = POD_FIELDS.iter().position(|f| *f == field) else {
                return Err(format!(
                    "field selector {text:?}: field {field:?} is not supported (supported: {})",
                    POD_FIELDS.join(", ")
                ));
            };
            terms.push(FieldTerm {
                field: index,
                value: unescape(value.trim()),
                equal,
            });
        }
        Ok(FieldSelector {
            source: text.to_owned(),
            terms,
        })
    }

    /// Whether a pod with these fields matches.
    pub fn matches(&self, pod: &PodFields<'_>) -> bool {
        self.terms.iter().all(|t| {
            let actual = match t.field {
                0 => pod.name,
                1 => pod.namespace,
                2 => pod.node_name,
                3 => pod.phase,
                _ => pod.pod_ip,
            };
            (actual == t.value) == t.equal
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LabelSelector({:?})", self.source)
    }
}

impl fmt::Debug for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldSelector({:?})", self.source)
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("invalid label selector {text:?}: unbalanced ')'"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("invalid label selector {text:?}: unbalanced '('"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement {
            key: key.to_owned(),
            op: Op::NotExists,
        });
    }
    // Set-based: `key in (...)` / `key notin (...)`.
    if let Some(open) = part.find('(') {
        let head = part[..open].trim_end();
        let (key, negate) = if let Some(k) = head.strip_suffix(" notin") {
            (k.trim(), true)
        } else if let Some(k) = head.strip_suffix(" in") {
            (k.trim(), false)
        } else {
            return Err(format!("{part:?}: expected `in` or `notin` before '('"));
        };
        check_key(key)?;
        let inner = part[open + 1..]
            .trim_end()
            .strip_suffix(')')
            .ok_or_else(|| format!("{part:?}: missing ')'"))?;
        let mut values = Vec::new();
        for v in inner.split(',') {
            let v = v.trim();
            check_value(v)?;
            values.push(v.to_owned());
        }
        let op = if negate {
            Op::NotIn(values)
        } else {
            Op::In(values)
        };
        return Ok(Requirement {
            key: key.to_owned(),
            op,
        });
    }
    for (token, kind) in [("!=", 0), ("==", 1), ("=", 1), (">", 2), ("<", 3)] {
        if let Some(i) = part.find(token) {
            let key = part[..i].trim();
            let value = part[i + token.len()..].trim();
            check_key(key)?;
            let op = match kind {
                0 | 1 => {
                    check_value(value)?;
                    if kind == 0 {
                        Op::NotIn(vec![value.to_owned()])
                    } else {
                        Op::In(vec![value.to_owned()])
                    }
                }
                _ => {
                    let n = value
                        .parse::<i64>()
                        .map_err(|_| format!("{part:?}: {value:?} is not an integer"))?;
                    if kind == 2 { Op::Gt(n) } else { Op::Lt(n) }
                }
            };
            return Ok(Requirement {
                key: key.to_owned(),
                op,
            });
        }
    }
    check_key(part)?;
    Ok(Requirement {
        key: part.to_owned(),
        op: Op::Exists,
    })
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of `[A-Za-z0-9_.-]` that starts and ends with an alphanumeric.
fn check_key(key: &str) -> Result<(), String> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            let ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !ok {
                return Err(format!("{key:?} has an invalid prefix"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !is_name(name) {
        return Err(format!("{key:?} is not a valid label key"));
    }
    Ok(())
}

/// A label value: empty, or a name of at most 63 characters.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_name(value)) {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid label value"))
    }
}

fn is_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Splits on `sep` where it is not escaped by a backslash (escapes are kept).
fn split_unescaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// The byte index of the first unescaped `pattern`.
fn find_unescaped(text: &str, pattern: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if text[i..].starts_with(pattern) {
            return Some(i);
        }
    }
    None
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escaped = false;
    for c in text.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// `check(selector, labels, expected match)`.
    fn check(selector: &str, pod: &[(&str, &str)], expected: bool) {
        let s = LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
        let pod = labels(pod);
        assert_eq!(
            s.matches(|k| pod.get(k).map(String::as_str)),
            expected,
            "{selector} on {pod:?}"
        );
    }

    #[test]
    fn label_selectors_match_as_kubernetes() {
        check("", &[], true);
        check("app=web", &[("app", "web")], true);
        check("app==web", &[("app", "web")], true);
        check("app=web", &[("app", "db")], false);
        check("app=web", &[], false);
        check("app!=web", &[], true);
        check("app!=web", &[("app", "web")], false);
        check("app in (web, db)", &[("app", "db")], true);
        check("app in (web,db)", &[], false);
        check("app notin (web,db)", &[], true);
        check("app notin (web,db)", &[("app", "db")], false);
        check("app", &[("app", "")], true);
        check("!app", &[("app", "x")], false);
        check("!app", &[], true);
        check(
            "app=web,tier in (fe),!canary",
            &[("app", "web"), ("tier", "fe")],
            true,
        );
        check(
            "app=web,tier in (fe),!canary",
            &[("app", "web"), ("tier", "fe"), ("canary", "1")],
            false,
        );
        check(
            "app.kubernetes.io/name=x",
            &[("app.kubernetes.io/name", "x")],
            true,
        );
        check("replicas>2", &[("replicas", "3")], true);
        check("replicas<2", &[("replicas", "3")], false);
        check("app=", &[("app", "")], true);
    }

    #[test]
    fn bad_label_selectors_are_rejected() {
        for bad in [
            "app=web,",
            "a b",
            "app in web",
            "app in (a",
            "-x=1",
            "app=bad value",
            "x>y",
            "/a=1",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let pod = PodFields {
            name: "web-1",
            namespace: "prod",
            node_name: "n1",
            phase: "Running",
            pod_ip: "10.0.0.1",
        };
        let ok = |s: &str| FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(ok("").matches(&pod));
        assert!(ok("status.phase=Running").matches(&pod));
        assert!(ok("status.phase==Running,metadata.namespace!=kube-system").matches(&pod));
        assert!(!ok("status.phase!=Running").matches(&pod));
        assert!(!ok("metadata.name=web-2").matches(&pod));
        assert!(ok("spec.nodeName=n1,status.podIP=10.0.0.1").matches(&pod));
        let escaped = PodFields { name: "a,b", ..pod };
        assert!(ok(r"metadata.name=a\,b").matches(&escaped));
        let e = FieldSelector::parse("spec.restartPolicy=Always").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(FieldSelector::parse("status.phase").is_err());
    }
}
