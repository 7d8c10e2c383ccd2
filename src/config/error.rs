//! Turning a YAML syntax or type error from serde-saphyr into a [`Problem`] with its key path.

use serde_saphyr::MessageFormatter;

use super::Problem;
use super::locate::{KeyIndex, ROOT};

/// The one problem serde-saphyr stopped at.
pub(crate) fn yaml_problem(err: &serde_saphyr::Error, origin: &str, index: &KeyIndex) -> Problem {
    let err = err.without_snippet();
    let location = err.location();
    if matches!(err, serde_saphyr::Error::MultipleDocuments { .. }) {
        // Prometheus reads the first document and ignores the rest; refusing is clearer.
        return Problem {
            file: origin.to_owned(),
            line: location.map_or(0, |l| l.line()),
            key: ROOT.to_owned(),
            message: "more than one YAML document (---); a config file holds one".to_owned(),
        };
    }
    let message = clean(&serde_saphyr::DefaultMessageFormatter.format_message(err));
    let line = location.map_or(0, |l| l.line());
    let unknown = unknown_field(&message);
    let key = location
        .filter(|l| l.line() > 0)
        .and_then(|l| index.path_at(l.span().offset(), unknown.is_some()))
        .filter(|p| !p.is_empty())
        .unwrap_or(ROOT)
        .to_owned();
    let message = match unknown {
        Some((field, expected)) => unknown_key_message(field, &expected),
        None => friendlier(message),
    };
    Problem {
        file: origin.to_owned(),
        line,
        key,
        message,
    }
}

/// Makes a message one line: drops the caret lines of regex errors and joins the rest.
pub(super) fn clean(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// serde-saphyr's terse scalar messages, said as a config reader would.
fn friendlier(message: String) -> String {
    match message.as_str() {
        "invalid u64" | "invalid u32" | "invalid usize" => {
            "expected a whole number, 0 or more".to_owned()
        }
        "invalid f64" => "expected a number".to_owned(),
        "invalid boolean" => "expected true or false".to_owned(),
        "expected string scalar" => "expected a string".to_owned(),
        _ => message,
    }
}

/// `unknown field `x`, expected one of a, b` -> ("x", ["a", "b"]).
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .strip_prefix(", expected one of ")
        .or_else(|| rest.strip_prefix(", expected "))
        .map(|list| {
            list.split(", ")
                .map(|s| s.trim_matches('`'))
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Some((field, expected))
}

fn unknown_key_message(field: &str, expected: &[&str]) -> String {
    if field.ends_with("_sd_configs") {
        return format!(
            "not supported by scrapelet: {field} (static_configs is the only service discovery)"
        );
    }
    // A typo is usually one or two edits away; anything further is not worth a guess.
    let best = expected
        .iter()
        .map(|candidate| (edit_distance(field, candidate), *candidate))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min();
    match best {
        Some((_, candidate)) => format!("unknown key {field:?} (did you mean {candidate:?}?)"),
        None => format!("unknown key {field:?}"),
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_keys_only() {
        assert_eq!(
            unknown_key_message("scrape_intervall", &["scrape_interval", "scrape_timeout"]),
            r#"unknown key "scrape_intervall" (did you mean "scrape_interval"?)"#
        );
        assert_eq!(
            unknown_key_message("foo", &["scrape_interval"]),
            r#"unknown key "foo""#
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn parses_serde_unknown_field_messages() {
        assert_eq!(
            unknown_field("unknown field `zzz`, expected one of a, n, b"),
            Some(("zzz", vec!["a", "n", "b"]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, expected `y`"),
            Some(("x", vec!["y"]))
        );
        assert_eq!(unknown_field("invalid u64"), None);
    }

    #[test]
    fn cleans_multi_line_messages() {
        assert_eq!(
            clean(
                "invalid regex \"(\": regex parse error:\n    ^(?s:()$\n     ^\nerror: unclosed group"
            ),
            "invalid regex \"(\": regex parse error: ^(?s:()$ error: unclosed group"
        );
    }
}
