//! Go (RE2) regular expression syntax, rewritten for the `regex` crate with Go's meaning.
//!
//! Prometheus compiles relabel regexes with Go's `regexp`. The `regex` crate reads almost the
//! same syntax, but a few constructs parse or match differently. [`translate`] walks a Go
//! pattern and writes an equivalent Rust pattern:
//!
//! | Go                                   | written as                 | why                                   |
//! |--------------------------------------|----------------------------|---------------------------------------|
//! | `\d \s \w` and negations (ASCII)     | `[0-9]`, `[\t\n\x0C\r ]`.. | Rust's are Unicode; Go's `\s` has no `\v` |
//! | `\b \B` (ASCII)                      | `(?-u:\b)`, `(?-u:\B)`     | Rust's are Unicode                     |
//! | `\Q...\E`                            | escaped literals           | Rust has no `\Q`                       |
//! | `\123`, `\0` (octal)                 | `\x{..}`                   | Rust needs a flag for octal            |
//! | `\<`, `\>` (literal)                 | `<`, `>`                   | Rust reads word boundaries             |
//! | `{` that is not a repetition         | `\{`                       | Rust rejects it                        |
//! | `[` inside a class (literal)         | `\[`                       | Rust reads a nested class              |
//! | `&&`, `--`, `~~` inside a class      | escaped                    | Rust reads set operations              |
//! | `\p{^Greek}`                         | `\P{Greek}`                | Rust has no `^` form                   |
//! | `(?ii)`, `(?i-i)`, `(?)`             | normalised flags           | Rust rejects repeated flags            |
//! | `(?P<name>..)`, `(?<name>..)`        | `(..)` + a name table      | Go allows names Rust rejects (`1a`)    |
//!
//! Go's errors are kept where Go rejects what Rust would accept: back-references (`\1`),
//! unknown escapes, stacked repetitions (`a**`), repeat counts over 1000, unknown flags.
//! Not reproduced: Go's limit of 1000 on nested repetition products, and Go's case-sensitive
//! Unicode class names (Rust also accepts `\p{greek}`); both only make Rust accept more.

/// A pattern rewritten for the `regex` crate.
#[derive(Debug)]
pub(super) struct Translated {
    /// The Rust pattern; its capture groups are numbered as in the Go pattern, unnamed.
    pub pattern: String,
    /// The Go name of each capture group, index 0 being the whole match.
    pub names: Vec<Option<String>>,
}

/// Rewrites a Go regular expression as an equivalent `regex` crate pattern.
/// The error reads like Go's (`missing closing ]`, `invalid escape sequence: \y`, ...).
pub(super) fn translate(go: &str) -> Result<Translated, String> {
    let mut t = Translator {
        src: go.chars().collect(),
        pos: 0,
        out: String::with_capacity(go.len() + 16),
        names: vec![None],
        last_was_repeat: false,
        frames: vec![Frame::default()],
    };
    t.run()?;
    Ok(Translated {
        pattern: t.out,
        names: t.names,
    })
}

struct Translator {
    src: Vec<char>,
    pos: usize,
    out: String,
    names: Vec<Option<String>>,
    /// The previous item was a repetition operator (Go rejects `a**`).
    last_was_repeat: bool,
    /// One per open group (the first is the whole pattern), for Go's limit on nested counted
    /// repetitions: along any path, the product of `{n,m}` maxima may not pass 1000.
    frames: Vec<Frame>,
}

/// Repetition bookkeeping for one group: the largest product of nested counted-repetition
/// maxima among its finished items, and that of its last item (which a repetition may still
/// change). A `{0}` ends a path: Go does not look inside it.
#[derive(Default)]
struct Frame {
    done: u32,
    last: Option<u32>,
}

/// Go's `maxRepeat`.
const MAX_REPEAT: u32 = 1000;

/// Go's ASCII Perl classes, written as Rust classes (valid inside a class too, as nested).
fn perl_class(c: char) -> Option<&'static str> {
    Some(match c {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        's' => r"[\t\n\x0C\r ]",
        'S' => r"[^\t\n\x0C\r ]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        _ => return None,
    })
}

/// Go's POSIX class names (`[:alpha:]`); the `regex` crate knows the same ones.
const POSIX_CLASSES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Writes `c` so that the `regex` crate reads it as that literal character, in or out of a
/// class.
fn push_literal(out: &mut String, c: char) {
    if matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    ) {
        out.push('\\');
        out.push(c);
    } else if c.is_control() || c == ' ' {
        // Plain is fine too; hex keeps the pattern readable in error messages.
        out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
    } else {
        out.push(c);
    }
}

impl Translator {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src.get(self.pos + n).copied()
    }

    fn rest(&self) -> String {
        self.src[self.pos..].iter().collect()
    }

    fn run(&mut self) -> Result<(), String> {
        while let Some(c) = self.peek() {
            let mut is_repeat = false;
            match c {
                '(' => self.group()?,
                ')' => {
                    if self.frames.len() < 2 {
                        return Err("unexpected )".to_owned());
                    }
                    self.pos += 1;
                    self.out.push(')');
                    self.close_frame();
                }
                '|' => {
                    self.pos += 1;
                    self.out.push('|');
                    self.fold_last();
                }
                '*' | '+' | '?' => {
                    self.repeat_op(&c.to_string())?;
                    self.pos += 1;
                    self.lazy_suffix();
                    is_repeat = true;
                }
                '{' => match self.counted_repeat()? {
                    Some((text, min, max)) => {
                        self.repeat_op(&text)?;
                        self.check_nesting(&text, min, max)?;
                        self.out.push_str(&text);
                        self.lazy_suffix();
                        is_repeat = true;
                    }
                    None => {
                        self.pos += 1;
                        self.out.push_str(r"\{");
                        self.item();
                    }
                },
                '^' | '$' | '.' => {
                    self.pos += 1;
                    self.out.push(c);
                    self.item();
                }
                '[' => {
                    self.class()?;
                    self.item();
                }
                '\\' => self.top_escape()?,
                _ => {
                    self.pos += 1;
                    push_literal(&mut self.out, c);
                    self.item();
                }
            }
            self.last_was_repeat = is_repeat;
        }
        // Go reports unbalanced groups itself (and so must we: what we accept, `regex`
        // compiles; found by fuzzing).
        if self.frames.len() > 1 {
            return Err("missing closing )".to_owned());
        }
        Ok(())
    }

    /// Checks a repetition operator against the previous item (Go rejects `a**`, `a*{2}`).
    /// The operator itself is written by the caller (`*`, `+`, `?` are written here).
    fn repeat_op(&mut self, op: &str) -> Result<(), String> {
        if self.last_was_repeat {
            return Err(format!("invalid nested repetition operator: `{op}`"));
        }
        // Nothing to repeat: at the start, after `(` or `|` (Go's message; found by fuzzing).
        if self.frames.last().is_none_or(|f| f.last.is_none()) {
            return Err(format!("missing argument to repetition operator: `{op}`"));
        }
        if op.len() == 1 {
            self.out.push_str(op);
        }
        Ok(())
    }

    /// A new item (literal, class, assertion) starts in the current group.
    fn item(&mut self) {
        self.fold_last();
        if let Some(f) = self.frames.last_mut() {
            f.last = Some(1);
        }
    }

    /// The last item of the current group is finished.
    fn fold_last(&mut self) {
        if let Some(f) = self.frames.last_mut() {
            f.done = f.done.max(f.last.take().unwrap_or(0));
        }
    }

    fn open_frame(&mut self) {
        self.fold_last();
        self.frames.push(Frame::default());
    }

    /// A group closes: it becomes the last item of the group around it.
    fn close_frame(&mut self) {
        if self.frames.len() < 2 {
            return; // unbalanced: `run` refuses it first
        }
        self.fold_last();
        let chain = self.frames.pop().map_or(0, |f| f.done);
        if let Some(f) = self.frames.last_mut() {
            f.last = Some(chain);
        }
    }

    /// Go's `repeatIsValid(re, 1000)`, run when a `{n,m}` with n or m at least 2 is applied.
    fn check_nesting(&mut self, text: &str, min: u32, max: Option<u32>) -> Result<(), String> {
        let Some(f) = self.frames.last_mut() else {
            return Ok(());
        };
        let m = max.unwrap_or(min);
        let inner = f.last.unwrap_or(0).max(1);
        let chain = if m == 0 { 0 } else { m.saturating_mul(inner) };
        let checked = min >= 2 || max.is_none_or(|x| x >= 2);
        if checked && chain > MAX_REPEAT {
            return Err(format!("invalid repeat count: `{text}`"));
        }
        f.last = Some(chain);
        Ok(())
    }

    fn lazy_suffix(&mut self) {
        if self.peek() == Some('?') {
            self.pos += 1;
            self.out.push('?');
        }
    }

    /// Parses `{n}`, `{n,}` or `{n,m}` at the cursor. `None` when it is not one (Go then reads
    /// `{` as a literal); an error when the counts are out of Go's range.
    fn counted_repeat(&mut self) -> Result<Option<(String, u32, Option<u32>)>, String> {
        let start = self.pos;
        let mut i = self.pos + 1;
        let Some((min, next)) = self.int_at(i) else {
            return Ok(None);
        };
        i = next;
        let max = if self.src.get(i) == Some(&',') {
            i += 1;
            if self.src.get(i) == Some(&'}') {
                None
            } else {
                let Some((m, next)) = self.int_at(i) else {
                    return Ok(None);
                };
                i = next;
                Some(m)
            }
        } else {
            Some(min)
        };
        if self.src.get(i) != Some(&'}') {
            return Ok(None);
        }
        i += 1;
        let text: String = self.src[start..i].iter().collect();
        let bad = min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min);
        if bad {
            return Err(format!("invalid repeat count: `{text}`"));
        }
        self.pos = i;
        let rust = match max {
            None => format!("{{{min},}}"),
            Some(m) if m == min => format!("{{{min}}}"),
            Some(m) => format!("{{{min},{m}}}"),
        };
        Ok(Some((rust, min, max)))
    }

    /// A decimal at `i` as Go's parser reads it: at least one digit, no leading zero.
    /// Values past 10^8 count as too large (returned as `u32::MAX`, over any limit).
    fn int_at(&self, mut i: usize) -> Option<(u32, usize)> {
        let start = i;
        while self.src.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if i == start || (i - start >= 2 && self.src[start] == '0') {
            return None;
        }
        let mut value: u32 = 0;
        for c in &self.src[start..i] {
            if value >= 100_000_000 {
                return Some((u32::MAX, i));
            }
            value = value * 10 + (*c as u32 - '0' as u32);
        }
        Some((value, i))
    }

    fn group(&mut self) -> Result<(), String> {
        // At '('.
        if self.peek_at(1) != Some('?') {
            self.pos += 1;
            self.out.push('(');
            self.names.push(None);
            self.open_frame();
            return Ok(());
        }
        let named_at = match (self.peek_at(2), self.peek_at(3)) {
            (Some('P'), Some('<')) => Some(self.pos + 4),
            (Some('<'), _) => Some(self.pos + 3),
            _ => None,
        };
        if let Some(name_start) = named_at {
            let Some(len) = self.src[name_start..].iter().position(|&c| c == '>') else {
                return Err(format!("invalid named capture: `{}`", self.rest()));
            };
            let name: String = self.src[name_start..name_start + len].iter().collect();
            let valid =
                !name.is_empty() && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !valid {
                let capture: String = self.src[self.pos..=name_start + len].iter().collect();
                return Err(format!("invalid named capture: `{capture}`"));
            }
            self.pos = name_start + len + 1;
            self.out.push('(');
            self.names.push(Some(name));
            self.open_frame();
            return Ok(());
        }
        // Flags: (?flags) or (?flags:re). Go: i m s U, one '-', at least one flag after '-'.
        let start = self.pos;
        let mut i = self.pos + 2;
        let mut negated = false;
        let mut saw_flag = false;
        // Last mention of each flag wins, as in Go's sequential reading: (flag, on).
        let mut state: Vec<(char, bool)> = Vec::new();
        while let Some(&c) = self.src.get(i) {
            i += 1;
            match c {
                'i' | 'm' | 's' | 'U' => {
                    state.retain(|(f, _)| *f != c);
                    state.push((c, !negated));
                    saw_flag = true;
                }
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                }
                ':' | ')' if !negated || saw_flag => {
                    let on: String = state.iter().filter(|s| s.1).map(|s| s.0).collect();
                    let off: String = state.iter().filter(|s| !s.1).map(|s| s.0).collect();
                    let mut flags = on;
                    if !off.is_empty() {
                        flags.push('-');
                        flags.push_str(&off);
                    }
                    self.pos = i;
                    if c == ':' {
                        self.out.push_str(&format!("(?{flags}:"));
                        self.open_frame();
                    } else if !flags.is_empty() {
                        self.out.push_str(&format!("(?{flags})"));
                    }
                    return Ok(());
                }
                _ => break,
            }
        }
        let shown: String = self.src[start..i.min(self.src.len())].iter().collect();
        Err(format!("invalid or unsupported Perl syntax: `{shown}`"))
    }

    fn top_escape(&mut self) -> Result<(), String> {
        // At '\'.
        let Some(c) = self.peek_at(1) else {
            return Err("trailing backslash at end of expression".to_owned());
        };
        if c != 'Q' {
            self.item();
        }
        match c {
            'A' => self.out.push_str(r"\A"),
            'z' => self.out.push_str(r"\z"),
            'b' => self.out.push_str(r"(?-u:\b)"),
            'B' => self.out.push_str(r"(?-u:\B)"),
            'C' => return Err(r"invalid escape sequence: `\C`".to_owned()),
            'Q' => {
                let start = self.pos + 2;
                let mut end = start;
                while end < self.src.len() && !(self.src[end] == '\\' && self.peek_end(end)) {
                    end += 1;
                }
                for k in start..end {
                    push_literal(&mut self.out, self.src[k]);
                    self.item();
                }
                self.pos = (end + 2).min(self.src.len());
                return Ok(());
            }
            'p' | 'P' => return self.unicode_class(),
            _ => {
                if let Some(class) = perl_class(c) {
                    self.out.push_str(class);
                } else {
                    let ch = self.escape()?;
                    push_literal(&mut self.out, ch);
                    return Ok(());
                }
            }
        }
        self.pos += 2;
        Ok(())
    }

    fn peek_end(&self, at: usize) -> bool {
        self.src.get(at + 1) == Some(&'E')
    }

    /// `\pL`, `\p{Greek}`, `\p{^Greek}`, `\PL`, ... at the cursor.
    fn unicode_class(&mut self) -> Result<(), String> {
        let mut negate = self.peek_at(1) == Some('P');
        let start = self.pos;
        let name: String = match self.peek_at(2) {
            None => return Err("invalid character class range: `\\p`".to_owned()),
            Some('{') => {
                let from = self.pos + 3;
                let Some(len) = self.src[from..].iter().position(|&c| c == '}') else {
                    let shown: String = self.src[start..].iter().collect();
                    return Err(format!("invalid character class range: `{shown}`"));
                };
                self.pos = from + len + 1;
                self.src[from..from + len].iter().collect()
            }
            Some(c) => {
                self.pos += 3;
                c.to_string()
            }
        };
        let name = match name.strip_prefix('^') {
            Some(rest) => {
                negate = !negate;
                rest.to_owned()
            }
            None => name,
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '-');
        // A class the regex crate does not know (Go's `\pO`, found by fuzzing) is refused
        // here, as Go refuses names it does not know: what we accept, `regex` compiles.
        if !valid || regex::Regex::new(&format!("\\p{{{name}}}")).is_err() {
            let shown: String = self.src[start..self.pos].iter().collect();
            return Err(format!("invalid character class range: `{shown}`"));
        }
        self.out
            .push_str(&format!("\\{}{{{name}}}", if negate { 'P' } else { 'p' }));
        Ok(())
    }

    /// A single-character escape at the cursor (at '\'), as Go's `parseEscape` reads it.
    fn escape(&mut self) -> Result<char, String> {
        let Some(c) = self.peek_at(1) else {
            return Err("trailing backslash at end of expression".to_owned());
        };
        let start = self.pos;
        self.pos += 2;
        let bad = |t: &Self| {
            let shown: String = t.src[start..t.pos.min(t.src.len())].iter().collect();
            format!("invalid escape sequence: `{shown}`")
        };
        let ch = match c {
            '1'..='7' if !self.peek().is_some_and(|d| ('0'..='7').contains(&d)) => {
                // A single non-zero digit is a back-reference: unsupported.
                return Err(bad(self));
            }
            '0'..='7' => {
                let mut value = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            value = value * 8 + (d as u32 - '0' as u32);
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                char::from_u32(value).ok_or_else(|| bad(self))?
            }
            'x' => {
                let value = if self.peek() == Some('{') {
                    self.pos += 1;
                    let from = self.pos;
                    while self.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                        self.pos += 1;
                    }
                    if self.pos == from || self.peek() != Some('}') {
                        return Err(bad(self));
                    }
                    let digits: String = self.src[from..self.pos].iter().collect();
                    self.pos += 1;
                    u32::from_str_radix(&digits, 16).map_err(|_| bad(self))?
                } else {
                    let (Some(h), Some(l)) = (self.peek(), self.peek_at(1)) else {
                        return Err(bad(self));
                    };
                    let (Some(h), Some(l)) = (h.to_digit(16), l.to_digit(16)) else {
                        return Err(bad(self));
                    };
                    self.pos += 2;
                    h * 16 + l
                };
                char::from_u32(value).ok_or_else(|| bad(self))?
            }
            'a' => '\x07',
            'f' => '\x0C',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0B',
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => c,
            _ => return Err(bad(self)),
        };
        Ok(ch)
    }

    /// A bracketed class at the cursor (at '['), with Go's reading of its contents.
    fn class(&mut self) -> Result<(), String> {
        let start = self.pos;
        self.pos += 1;
        self.out.push('[');
        if self.peek() == Some('^') {
            self.pos += 1;
            self.out.push('^');
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                let shown: String = self.src[start..].iter().collect();
                return Err(format!("missing closing ]: `{shown}`"));
            };
            if c == ']' && !first {
                self.pos += 1;
                self.out.push(']');
                return Ok(());
            }
            first = false;
            if c == '[' && self.peek_at(1) == Some(':') {
                let from = self.pos + 2;
                let close = self.src[from..]
                    .windows(2)
                    .position(|w| w[0] == ':' && w[1] == ']');
                if let Some(len) = close {
                    let name: String = self.src[from..from + len].iter().collect();
                    let base = name.strip_prefix('^').unwrap_or(&name);
                    if !POSIX_CLASSES.contains(&base) {
                        return Err(format!("invalid character class range: `[:{name}:]`"));
                    }
                    self.pos = from + len + 2;
                    self.out.push_str(&format!("[:{name}:]"));
                    continue;
                }
            }
            if c == '\\' {
                match self.peek_at(1) {
                    Some('p' | 'P') => {
                        self.unicode_class()?;
                        continue;
                    }
                    Some(p) => {
                        if let Some(class) = perl_class(p) {
                            self.pos += 2;
                            self.out.push_str(class);
                            continue;
                        }
                    }
                    None => {}
                }
            }
            let lo = self.class_char()?;
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|n| n != ']') {
                self.pos += 1;
                let hi = self.class_char()?;
                if hi < lo {
                    return Err(format!("invalid character class range: `{lo}-{hi}`"));
                }
                push_literal(&mut self.out, lo);
                self.out.push('-');
                push_literal(&mut self.out, hi);
            } else {
                push_literal(&mut self.out, lo);
            }
        }
    }

    fn class_char(&mut self) -> Result<char, String> {
        match self.peek() {
            Some('\\') => self.escape(),
            Some(c) => {
                self.pos += 1;
                Ok(c)
            }
            None => Err("missing closing ]".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    /// Compiles the Go pattern through the translation and reports whether `input` matches in
    /// full, or the error.
    fn full_match(go: &str, input: &str) -> Result<bool, String> {
        let t = translate(go)?;
        let re = regex::Regex::new(&format!("^(?:{})$", t.pattern)).map_err(|e| e.to_string())?;
        Ok(re.is_match(input))
    }

    #[test]
    fn matches_like_go() {
        // (pattern, input, matches in full)
        let cases: &[(&str, &str, bool)] = &[
            (r"\d+", "123", true),
            (r"\d+", "١٢٣", false), // Arabic-Indic digits: not \d in Go
            (r"\w+", "héllo", false),
            (r"\w+", "hello_1", true),
            (r"\s", "\x0B", false), // Go's \s has no \v
            (r"\s", "\x0C", true),
            (r"\S+", "ab", true),
            (r"[\d.]+", "1.5", true),
            (r"[^\d]+", "ab", true),
            (r"[^\D]", "5", true),
            (r"[\W]", "é", true),
            (r"\Qa.b*\E", "a.b*", true),
            (r"\Qa.b*\E", "axb", false),
            (r"\Qa.b", "a.b", true),
            (r"x\Q\Ey", "xy", true),
            (r"\101\x42\x{43}\0", "ABC\0", true),
            (r"\<a\>", "<a>", true),
            (r"a{,3}", "a{,3}", true),
            (r"{foo}", "{foo}", true),
            (r"a{", "a{", true),
            (r"a{01}", "a{01}", true),
            (r"a{2}", "aa", true),
            (r"a{2,}", "aaa", true),
            (r"a{1,2}?b", "ab", true),
            (r"[[]", "[", true),
            (r"[a[b]+", "[ab", true),
            (r"[a&&b]", "&", true),
            (r"[a-c--]", "-", true),
            (r"[a~~b]", "~", true),
            (r"[]a]", "]", true),
            (r"[a-]", "-", true),
            (r"[[:alpha:]]+", "abC", true),
            (r"[[:^digit:]]", "a", true),
            (r"[[:word:]]", "_", true),
            (r"\p{Greek}+", "αβ", true),
            (r"\p{^Greek}", "a", true),
            (r"\P{^Greek}", "α", true),
            (r"\pL", "é", true),
            (r"[\p{Lu}x]+", "Ax", true),
            (r"(?i)abc", "ABC", true),
            (r"(?ii)abc", "ABC", true),
            (r"(?i-i)abc", "ABC", false),
            (r"(?)abc", "abc", true),
            (r"(?i:a)b", "Ab", true),
            (r"(?s).", "\n", true),
            (r"(?U)a+", "aa", true),
            (r"a.b", "a\nb", false),
            (r"\ba\b", "a", true),
            (r"x\Bé", "xé", false), // ASCII \B: x|é is a boundary in Go
            (r"\x20", " ", true),
            (r"\ ", " ", true),
            (r"\.\*\+\?\(\)\|\[\]\{\}\^\$\\", r".*+?()|[]{}^$\", true),
            (r"[\]\[\\\-\^]+", r"][\-^", true),
            (r"\#\&\~\-\!\@\%", "#&~-!@%", true),
            (r"\a\f\t\n\r\v", "\x07\x0C\t\n\r\x0B", true),
            (r"a|", "", true),
            (r"(?P<x>a)(?<y>b)(c)", "abc", true),
            (r"(?P<1a>a)", "a", true),
            // Go's nesting limit: products of nested {n,m} maxima up to 1000 pass.
            (
                r"(((((((((x{2}){2}){2}){2}){2}){2}){2}){2}){2})",
                "xx",
                false,
            ),
            (r"(a{500}){2}b{1000}", "b", false),
            (r"((a{600}){0}){2}", "", true),
            (r"(a{10}){1}", "", false),
            (r"(a{999}){1}", "a", false),
        ];
        for (go, input, want) in cases {
            assert_eq!(
                full_match(go, input),
                Ok(*want),
                "pattern {go:?} on {input:?}"
            );
        }
    }

    #[test]
    fn rejects_like_go() {
        // (pattern, start of Go's message)
        let cases: &[(&str, &str)] = &[
            (r"\1", "invalid escape sequence"),
            (r"(a)\1", "invalid escape sequence"),
            (r"\8", "invalid escape sequence"),
            (r"\y", "invalid escape sequence"),
            (r"\C", "invalid escape sequence"),
            (r"\xZ1", "invalid escape sequence"),
            (r"\x{110000}", "invalid escape sequence"),
            (r"a\", "trailing backslash"),
            (r"a**", "invalid nested repetition operator"),
            (r"a*{2}", "invalid nested repetition operator"),
            (r"a+??", "invalid nested repetition operator"),
            (r"a{1001}", "invalid repeat count"),
            (r"a{2,1}", "invalid repeat count"),
            (r"a{100000}", "invalid repeat count"),
            (r"x{1,9876543210}", "invalid repeat count"),
            (
                r"((((((((((x{2}){2}){2}){2}){2}){2}){2}){2}){2}){2})",
                "invalid repeat count",
            ),
            (r"(a{500}b){3}", "invalid repeat count"),
            (r"(?:a|(b{11})){100}", "invalid repeat count"),
            (r"[a-Z]", "invalid character class range"),
            (r"(?x)a", "invalid or unsupported Perl syntax"),
            (r"(?i-)a", "invalid or unsupported Perl syntax"),
            (r"(?-)a", "invalid or unsupported Perl syntax"),
            (r"(?i", "invalid or unsupported Perl syntax"),
            (r"(?P=x)", "invalid or unsupported Perl syntax"),
            (r"(?P<>a)", "invalid named capture"),
            (r"(?P<a-b>a)", "invalid named capture"),
            (r"(?P<a", "invalid named capture"),
            (r"[a", "missing closing ]"),
            (r"[z-a]", "invalid character class range"),
            (r"[[:foo:]]", "invalid character class range"),
            (r"[\b]", "invalid escape sequence"),
            // Found by the fuzz target: a repetition with nothing before it.
            (r"*[^\x00-\x7F]*", "missing argument to repetition operator"),
            (r"(+a)", "missing argument to repetition operator"),
            (r"a|?", "missing argument to repetition operator"),
            (r"{2}", "missing argument to repetition operator"),
            (r"(x{9.1*F", "missing closing )"),
            (r"\pL\PO", "invalid character class range"),
            (r"\p{NoSuchScript}", "invalid character class range"),
            (r"a)", "unexpected )"),
            (r"(a))(", "unexpected )"),
        ];
        for (go, want) in cases {
            match translate(go) {
                Err(e) => assert!(e.starts_with(want), "pattern {go:?}: got {e:?}"),
                Ok(t) => panic!("pattern {go:?} translated to {:?}", t.pattern),
            }
        }
    }

    /// Compiles `go` as `Regex::new` does (anchored, then rewritten).
    fn compiles(go: &str) -> Result<(), String> {
        let t = translate(&format!("^(?s:{go})$"))?;
        regex::Regex::new(&t.pattern)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn go_accepts_and_so_do_we() {
        for go in [
            "",
            "|",
            "|x|",
            "a|^",
            "{",
            "}",
            "a*{",
            "x{1001",
            "x{9876543210,",
            "x{2,1",
            "a{,2}",
            r"\-",
            "-",
            r"\_",
            r"\|\(\)",
            r"[^\\]",
            "[[:^lower:]]",
            "(?i)[^[:lower:]]",
            r"\p{Braille}",
            r"\P{^Braille}",
            r"\pZ",
            r"[\pZ]",
            r"[\P{^Braille}]",
            r"\p{Any}",
            r"\p{^Any}",
            r"[\012-\234]\141",
            r"[\x{41}-\x7a]\x61",
            "[α-ε☺]",
            r"\Q+|*?{[\E",
            r"\Q+\E+",
            r"\Qab\E+",
            r"\Q\\E",
            r"\Q\\\E",
            "(?m)^",
            r"(?m)\z",
            r"(?-m)\A",
            r"[\s\S]a",
            "(?-s)(?:(?:^).)",
            "(?:x|(?:xa))",
            "x{2}|x{2}[0-9]",
            "a.*?c|a.*?b",
            "((((((((((x{2}){2}){2}){2}){2}){2}){2}){2}){2}))",
            "[a-b-c]",
            "(?U)a+?",
            r"(?i)\W",
            "^*",
            r"\b\B",
            r"\x{10FFFF}",
        ] {
            assert_eq!(compiles(go), Ok(()), "{go:?}");
        }
    }

    #[test]
    fn go_rejects_and_so_do_we() {
        for go in [
            "(",
            ")",
            "(a",
            "a)",
            "(a))",
            "(a|b|",
            "a|b|)",
            "[a-z",
            "([a-z)",
            "[a-z)",
            "([a-z]))",
            "x{1001}",
            "x{9876543210}",
            "x{2,1}",
            "x{1,9876543210}",
            "(?P<name>a",
            "(?P<name>",
            "(?P<name",
            "(?P<x y>a)",
            "(?P<>a)",
            "(?<name>a",
            "(?<x y>a)",
            "[a-Z]",
            "(?i)[a-Z]",
            r"\Q\E*",
            "a{100000}",
            "a{100000,}",
            "a++",
            "a**",
            "a?*",
            "a+*",
            "a{1}*",
            ".{1}{2}.{3}",
            "*",
            "(*)",
            "a|*",
        ] {
            assert!(compiles(go).is_err(), "{go:?} compiled");
        }
    }

    #[test]
    fn keeps_group_numbers_and_go_names() {
        let t = translate(r"(?P<first>a)(?:b)(c)(?<1x>d)(?i)").unwrap();
        assert_eq!(
            t.names,
            vec![None, Some("first".into()), None, Some("1x".into())]
        );
        let re = regex::Regex::new(&t.pattern).unwrap();
        assert_eq!(re.captures_len(), 4);
        assert!(re.capture_names().all(|n| n.is_none()));
    }
}
