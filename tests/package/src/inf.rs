//! A small INF parser: enough of the Windows INF syntax to read a driver
//! package INF and follow its cross-references.
//!
//! Covers sections (`[name]`, names case-insensitive), `key = value` and
//! value-only entries, comma-separated fields, double-quoted fields (`""` is a
//! literal quote), `;` comments outside quotes, `\` line continuation,
//! `%token%` substitution from `[Strings]` (`%%` is a literal `%`; numeric
//! DIRIDs such as `%13%` stay as they are) and registry lines
//! (`HKR, subkey, name, flags, value`).
//!
//! ```
//! use portwatch_package_tests::inf::Inf;
//!
//! let inf = Inf::parse("[Strings]\nName = \"PortWatch\"\n[Ndi]\nHKR, Ndi, Service, , %Name%\n")?;
//! let line = &inf.registry_lines("Ndi")?[0];
//! assert_eq!((line.subkey.as_str(), line.value_name.as_str()), ("Ndi", "Service"));
//! assert_eq!(line.value, ["PortWatch"]);
//! # Ok::<(), portwatch_package_tests::inf::ParseError>(())
//! ```

use std::fmt;

/// A parsed INF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inf {
    sections: Vec<Section>,
}

/// One `[section]` and its entries, in file order. A section that appears
/// twice is merged, as Windows setup does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name as written between the brackets.
    pub name: String,
    /// The entries, in file order.
    pub entries: Vec<Entry>,
}

/// One entry: `key = f1, f2, …` or a value-only line `f1, f2, …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key left of `=`, if any.
    pub key: Option<String>,
    /// The fields, trimmed and unquoted (not yet `%string%`-expanded).
    pub fields: Vec<String>,
    /// The 1-based line the entry starts on.
    pub line: usize,
}

/// A registry line of an AddReg section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegLine {
    /// `HKR`, `HKLM`, …
    pub root: String,
    /// The subkey (may be empty).
    pub subkey: String,
    /// The value name (empty for the default value).
    pub value_name: String,
    /// The `FLG_ADDREG_*` flags (0 when omitted).
    pub flags: u32,
    /// The value fields, `%string%`-expanded.
    pub value: Vec<String>,
}

/// Why an INF did not parse, or a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// An entry before the first section header.
    EntryOutsideSection {
        /// 1-based line number.
        line: usize,
    },
    /// A `[` without its `]`.
    UnterminatedSectionName {
        /// 1-based line number.
        line: usize,
    },
    /// A `"` without its closing quote.
    UnterminatedQuote {
        /// 1-based line number.
        line: usize,
    },
    /// A registry line with fewer than three fields or bad flags.
    BadRegistryLine {
        /// 1-based line number.
        line: usize,
    },
    /// A section that the INF does not have.
    NoSuchSection(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EntryOutsideSection { line } => write!(f, "line {line}: entry outside a section"),
            Self::UnterminatedSectionName { line } => write!(f, "line {line}: missing ']'"),
            Self::UnterminatedQuote { line } => write!(f, "line {line}: missing closing quote"),
            Self::BadRegistryLine { line } => write!(f, "line {line}: malformed registry line"),
            Self::NoSuchSection(name) => write!(f, "no section [{name}]"),
        }
    }
}

impl std::error::Error for ParseError {}

impl Inf {
    /// Parses INF text (LF or CRLF line endings).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut inf = Inf { sections: Vec::new() };
        let mut current: Option<usize> = None;
        for (line, logical) in logical_lines(text)? {
            let trimmed = logical.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest.split_once(']').ok_or(ParseError::UnterminatedSectionName { line })?.0.trim();
                current = Some(inf.section_index_or_insert(name));
                continue;
            }
            let index = current.ok_or(ParseError::EntryOutsideSection { line })?;
            inf.sections[index].entries.push(parse_entry(trimmed, line));
        }
        Ok(inf)
    }

    /// The section called `name` (case-insensitive).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Like [`Inf::section`], as an error when the section is missing.
    pub fn require_section(&self, name: &str) -> Result<&Section, ParseError> {
        self.section(name).ok_or_else(|| ParseError::NoSuchSection(name.to_owned()))
    }

    /// The names of all sections, in file order.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|s| s.name.as_str())
    }

    /// The `[Strings]` value of `token` (case-insensitive).
    pub fn string(&self, token: &str) -> Option<&str> {
        let entry = self.section("Strings")?.first(token)?;
        entry.fields.first().map(String::as_str)
    }

    /// Replaces `%token%` with its `[Strings]` value. Unknown tokens (DIRIDs
    /// such as `%13%`) are kept as written; `%%` becomes `%`.
    pub fn expand(&self, field: &str) -> String {
        let mut out = String::new();
        let mut rest = field;
        while let Some(start) = rest.find('%') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('%') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let token = &after[..end];
            match self.string(token) {
                _ if token.is_empty() => out.push('%'),
                Some(value) => out.push_str(value),
                None => {
                    out.push('%');
                    out.push_str(token);
                    out.push('%');
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The expanded fields of the first `key` entry of `section`.
    pub fn value(&self, section: &str, key: &str) -> Option<Vec<String>> {
        let entry = self.section(section)?.first(key)?;
        Some(entry.fields.iter().map(|f| self.expand(f)).collect())
    }

    /// The registry lines of an AddReg section.
    pub fn registry_lines(&self, section: &str) -> Result<Vec<RegLine>, ParseError> {
        self.require_section(section)?.entries.iter().map(|entry| self.registry_line(entry)).collect()
    }

    fn registry_line(&self, entry: &Entry) -> Result<RegLine, ParseError> {
        let bad = ParseError::BadRegistryLine { line: entry.line };
        if entry.key.is_some() || entry.fields.len() < 3 {
            return Err(bad);
        }
        let field = |i: usize| entry.fields.get(i).map(|f| self.expand(f)).unwrap_or_default();
        let flags = parse_number(&field(3)).ok_or(bad)?;
        Ok(RegLine {
            root: field(0),
            subkey: field(1),
            value_name: field(2),
            flags,
            value: entry.fields.iter().skip(4).map(|f| self.expand(f)).collect(),
        })
    }

    fn section_index_or_insert(&mut self, name: &str) -> usize {
        if let Some(index) = self.sections.iter().position(|s| s.name.eq_ignore_ascii_case(name)) {
            return index;
        }
        self.sections.push(Section { name: name.to_owned(), entries: Vec::new() });
        self.sections.len() - 1
    }
}

impl Section {
    /// The entries whose key is `key` (case-insensitive).
    pub fn entries_with_key(&self, key: &str) -> Vec<&Entry> {
        self.entries.iter().filter(|e| e.has_key(key)).collect()
    }

    /// The first entry whose key is `key`.
    pub fn first(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.has_key(key))
    }
}

impl Entry {
    /// Whether the entry's key is `key` (case-insensitive).
    pub fn has_key(&self, key: &str) -> bool {
        self.key.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(key))
    }
}

/// Parses an INF number: `0x…` hexadecimal or decimal; empty is 0.
pub fn parse_number(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Joins continued lines and strips comments; yields (first line, text).
fn logical_lines(text: &str) -> Result<Vec<(usize, String)>, ParseError> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let stripped = strip_comment(raw.trim_end_matches('\r'), line)?;
        let (start, mut joined) = pending.take().unwrap_or((line, String::new()));
        let body = stripped.trim_end();
        match body.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(body);
                out.push((start, joined));
            }
        }
    }
    if let Some(last) = pending {
        out.push(last);
    }
    Ok(out)
}

/// Removes a `;` comment that is outside double quotes.
fn strip_comment(line: &str, number: usize) -> Result<&str, ParseError> {
    let mut in_quotes = false;
    for (at, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => return Ok(&line[..at]),
            _ => {}
        }
    }
    if in_quotes {
        return Err(ParseError::UnterminatedQuote { line: number });
    }
    Ok(line)
}

/// Splits `text` at `separator` characters outside double quotes.
fn split_outside_quotes(text: &str, separator: char, limit: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        } else if c == separator && !in_quotes && parts.len() + 1 < limit {
            parts.push(&text[start..at]);
            start = at + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Trims a field and removes its quotes (`""` inside quotes is a `"`).
fn unquote(field: &str) -> String {
    let field = field.trim();
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            '"' => in_quotes = !in_quotes,
            _ => out.push(c),
        }
    }
    out
}

fn parse_entry(text: &str, line: usize) -> Entry {
    let halves = split_outside_quotes(text, '=', 2);
    let (key, value) = match halves.as_slice() {
        [key, value] => (Some(unquote(key)), *value),
        _ => (None, text),
    };
    let fields = split_outside_quotes(value, ',', usize::MAX).into_iter().map(unquote).collect();
    Entry { key, fields, line }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "; header comment\r\n\
        [Version]\r\n\
        Signature = \"$Windows NT$\" ; trailing\r\n\
        Class=NetService\r\n\
        [strings]\r\n\
        Name = \"Port;Watch \"\"x\"\"\"\r\n\
        [Files]\r\n\
        portwatch.sys, , , 2\r\n\
        [Reg]\r\n\
        HKR, Ndi, Service, , %Name%\r\n\
        HKR, Ndi\\Interfaces, FilterMediaTypes, , \"ethernet\"\r\n\
        HKR, Ndi, FilterType, 0x00010001, 2\r\n\
        [Svc]\r\n\
        ServiceBinary = %13%\\portwatch.sys\r\n\
        Long = a, \\\r\n   b\r\n\
        [VERSION]\r\n\
        PnpLockdown = 1\r\n";

    fn sample() -> Inf {
        Inf::parse(SAMPLE).expect("sample parses")
    }

    #[test]
    fn reads_keys_case_insensitively_and_strips_comments() {
        let inf = sample();
        assert_eq!(inf.value("version", "signature"), Some(vec!["$Windows NT$".into()]));
        assert_eq!(inf.value("Version", "CLASS"), Some(vec!["NetService".into()]));
    }

    #[test]
    fn merges_repeated_sections() {
        let inf = sample();
        assert_eq!(inf.value("Version", "PnpLockdown"), Some(vec!["1".into()]));
        assert_eq!(inf.section_names().filter(|n| n.eq_ignore_ascii_case("version")).count(), 1);
    }

    #[test]
    fn keeps_semicolons_and_doubled_quotes_inside_quotes() {
        assert_eq!(sample().string("name"), Some("Port;Watch \"x\""));
    }

    #[test]
    fn expands_strings_but_keeps_dirids() {
        let inf = sample();
        assert_eq!(inf.value("Svc", "ServiceBinary"), Some(vec!["%13%\\portwatch.sys".into()]));
        assert_eq!(inf.expand("a%%b %Name%"), "a%b Port;Watch \"x\"");
    }

    #[test]
    fn joins_continued_lines() {
        assert_eq!(sample().value("Svc", "Long"), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn reads_value_only_entries_and_registry_lines() {
        let inf = sample();
        let files = inf.section("Files").expect("Files");
        assert_eq!(files.entries[0].key, None);
        assert_eq!(files.entries[0].fields, ["portwatch.sys", "", "", "2"]);
        let reg = inf.registry_lines("Reg").expect("registry lines");
        assert_eq!(reg[0].value, ["Port;Watch \"x\""]);
        assert_eq!(reg[1].subkey, "Ndi\\Interfaces");
        assert_eq!((reg[2].flags, reg[2].value.as_slice()), (0x0001_0001, &["2".to_owned()][..]));
    }

    #[test]
    fn reports_malformed_input() {
        assert_eq!(Inf::parse("Key = 1\n"), Err(ParseError::EntryOutsideSection { line: 1 }));
        assert_eq!(Inf::parse("\n[Version\n"), Err(ParseError::UnterminatedSectionName { line: 2 }));
        assert_eq!(Inf::parse("[S]\nA = \"x\n"), Err(ParseError::UnterminatedQuote { line: 2 }));
        let inf = Inf::parse("[R]\nHKR, Ndi\n").expect("parses");
        assert_eq!(inf.registry_lines("R"), Err(ParseError::BadRegistryLine { line: 2 }));
        assert_eq!(inf.registry_lines("X"), Err(ParseError::NoSuchSection("X".into())));
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_number("0x40000"), Some(0x40000));
        assert_eq!(parse_number(" 12 "), Some(12));
        assert_eq!(parse_number(""), Some(0));
        assert_eq!(parse_number("zz"), None);
    }
}
