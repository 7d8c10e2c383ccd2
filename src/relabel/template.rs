//! `$1`, `${1}`, `$name` templates, read exactly as Go's `regexp.Expand` reads them.
//!
//! Go's rules: `$$` is a `$`; `$` then a name (`[\pL\pNd_]+`, as long as possible) or a name in
//! braces refers to a group; a name of digits only and no leading zero is a group number, any
//! other name a group name; `$1x` is the group named `1x`, not group 1 then `x`. A reference to a
//! group that does not exist or did not take part in the match expands to nothing. A `$` not
//! followed by a valid reference is kept as text.
//!
//! A template is parsed once per rule against that rule's regex, so expansion is a walk over
//! literal pieces and group indexes.

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Piece {
    Literal(String),
    /// A capture group by index; expands to the group's text, or nothing if it did not match.
    Group(usize),
}

/// A template parsed against one regex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Template {
    pieces: Vec<Piece>,
    /// The highest group index referenced, if any.
    max_group: Option<usize>,
}

impl Template {
    /// Parses `template` for a regex whose groups are named `names` (index 0 = whole match).
    pub(super) fn parse(template: &str, names: &[Option<String>]) -> Self {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                literal.push('$');
                rest = after;
                continue;
            }
            let Some((name, after)) = extract(rest) else {
                literal.push('$');
                continue;
            };
            rest = after;
            if let Some(group) = resolve(name, names) {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Group(group));
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let max_group = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Group(g) => Some(*g),
                Piece::Literal(_) => None,
            })
            .max();
        Template { pieces, max_group }
    }

    /// The expansion when it refers to no group (the same for every match).
    pub(super) fn constant(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The highest group index the template refers to.
    pub(super) fn max_group(&self) -> Option<usize> {
        self.max_group
    }

    /// Appends the expansion to `out`; `group(i)` gives group `i`'s text if it matched.
    pub(super) fn expand<'a>(&self, out: &mut String, group: impl Fn(usize) -> Option<&'a str>) {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Group(g) => {
                    if let Some(text) = group(*g) {
                        out.push_str(text);
                    }
                }
            }
        }
    }
}

/// Go's `extract`: the reference after a `$`, and the text after it.
fn extract(s: &str) -> Option<(&str, &str)> {
    let (body, brace) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let rest = &body[end..];
    if brace {
        let rest = rest.strip_prefix('}')?;
        return Some((name, rest));
    }
    Some((name, rest))
}

/// Go's `unicode.IsLetter(c) || unicode.IsDigit(c) || c == '_'`.
fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    unicode_letter_or_digit(c)
}

/// Letters (general category L) and decimal digits (Nd), for names outside ASCII.
fn unicode_letter_or_digit(c: char) -> bool {
    use std::sync::LazyLock;
    static CLASS: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"^[\p{L}\p{Nd}]$").ok());
    let mut buf = [0u8; 4];
    CLASS
        .as_ref()
        .is_some_and(|re| re.is_match(c.encode_utf8(&mut buf)))
}

/// The group a reference names: a number (no leading zero, below 10^8) or a group name.
fn resolve(name: &str, names: &[Option<String>]) -> Option<usize> {
    let numeric = name.bytes().all(|b| b.is_ascii_digit())
        && !(name.len() > 1 && name.starts_with('0'))
        && name.len() <= 9;
    if numeric {
        let n: usize = name.parse().ok()?;
        return (n < names.len()).then_some(n);
    }
    names.iter().position(|n| n.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expands `template` against a match with these groups (None: not taking part) and names.
    fn check(template: &str, groups: &[Option<&str>], names: &[Option<&str>], expected: &str) {
        let names: Vec<Option<String>> = names.iter().map(|n| n.map(str::to_owned)).collect();
        let t = Template::parse(template, &names);
        let mut out = String::new();
        t.expand(&mut out, |i| groups.get(i).copied().flatten());
        assert_eq!(out, expected, "template {template:?}");
    }

    #[test]
    fn expands_like_go() {
        let g = &[Some("abc"), Some("a"), Some("b"), None];
        let n = &[None, None, Some("name"), Some("gone")];
        check("$1", g, n, "a");
        check("${1}", g, n, "a");
        check("$1x", g, n, ""); // group named "1x": none
        check("${1}x", g, n, "ax");
        check("$2-$1", g, n, "b-a");
        check("$name", g, n, "b");
        check("${name}s", g, n, "bs");
        check("$names", g, n, "");
        check("$gone", g, n, ""); // did not take part
        check("$3", g, n, "");
        check("$9", g, n, ""); // no such group
        check("$0", g, n, "abc");
        check("$01", g, n, ""); // leading zero: a name, and no such name
        check("$$1", g, n, "$1");
        check("$$$1", g, n, "$a");
        check("a$", g, n, "a$");
        check("$-", g, n, "$-");
        check("${", g, n, "${");
        check("${}", g, n, "${}");
        check("${1", g, n, "${1");
        check("${ 1}", g, n, "${ 1}");
        check("$é", g, n, ""); // é is a letter: a name
        check("$1é", g, n, "");
        check("$1·", g, n, "a·"); // · is not a letter
        check("plain", g, n, "plain");
        check("", g, n, "");
        check("$100000000", g, n, "");
    }

    #[test]
    fn constant_templates_are_known_up_front() {
        let names = vec![None, None];
        assert_eq!(Template::parse("abc", &names).constant(), Some("abc"));
        assert_eq!(Template::parse("a$$b", &names).constant(), Some("a$b"));
        assert_eq!(Template::parse("$nope", &names).constant(), Some(""));
        assert_eq!(Template::parse("$1", &names).constant(), None);
        assert_eq!(Template::parse("x$1", &names).max_group(), Some(1));
    }
}
