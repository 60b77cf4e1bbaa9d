//! What Inf2Cat reads from a driver package's INF: the files it lists, the
//! hardware IDs of its models and the OS decorations of those models.

/// The catalog-relevant facts of an INF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfFacts {
    /// `[SourceDisksFiles*]` keys: the files the INF installs.
    pub source_files: Vec<String>,
    /// Hardware IDs of the decorated model sections, lower case, in order.
    pub hardware_ids: Vec<String>,
    /// The `[Manufacturer]` decorations, e.g. `NTamd64.10.0...19041`.
    pub decorations: Vec<String>,
}

/// One `[Section]` with its lines (comments and blank lines removed).
fn sections(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.trim().to_string(), Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line.to_string());
        }
    }
    out
}

/// The line without its `;` comment (a `;` inside quotes is text).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The comma-separated fields right of `=`, trimmed.
fn fields(line: &str) -> Vec<String> {
    line.split_once('=').map(|(_, r)| r).unwrap_or(line).split(',').map(|f| f.trim().to_string()).collect()
}

impl InfFacts {
    /// Reads the facts from the INF's text.
    pub fn parse(text: &str) -> Self {
        let sections = sections(text);
        let find = |name: &str| sections.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, l)| l);
        let mut facts = InfFacts::default();
        for (name, lines) in &sections {
            if name.to_ascii_lowercase().starts_with("sourcedisksfiles") {
                for line in lines {
                    if let Some((key, _)) = line.split_once('=') {
                        let key = key.trim().to_string();
                        if !facts.source_files.iter().any(|f| f.eq_ignore_ascii_case(&key)) {
                            facts.source_files.push(key);
                        }
                    }
                }
            }
        }
        for line in find("Manufacturer").into_iter().flatten() {
            let entry = fields(line);
            let Some((models, decorations)) = entry.split_first() else { continue };
            for decoration in decorations.iter().filter(|d| !d.is_empty()) {
                facts.decorations.push(decoration.clone());
                for model in find(&format!("{models}.{decoration}")).into_iter().flatten() {
                    for id in fields(model).iter().skip(1).filter(|id| !id.is_empty()) {
                        let id = id.to_ascii_lowercase();
                        if !facts.hardware_ids.contains(&id) {
                            facts.hardware_ids.push(id);
                        }
                    }
                }
            }
        }
        facts
    }

    /// The lowest Windows build the decorated models target (the fourth
    /// field of `NT<arch>.<major>.<minor>.<product type>.<suite>...<build>`
    /// decorations), if every decoration names one.
    pub fn lowest_build(&self) -> Option<u32> {
        self.decorations.iter().map(|d| decoration_build(d)).collect::<Option<Vec<u32>>>()?.into_iter().min()
    }
}

/// The build number of a decoration such as `NTamd64.10.0...19041`.
pub fn decoration_build(decoration: &str) -> Option<u32> {
    let parts: Vec<&str> = decoration.split('.').collect();
    // NTamd64 . 10 . 0 . <product> . <suite> . <build>
    parts.get(5).and_then(|b| b.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: &str = "[Manufacturer]\r\n%M% = Models, NTamd64.10.0...25319, NTamd64.10.0...19041 ; c\r\n\
        [Models.NTamd64.10.0...25319]\r\n%D% = Install, PW_PortWatch\r\n\
        [Models.NTamd64.10.0...19041]\r\n%D% = Install.SysDir, pw_portwatch\r\n\
        [SourceDisksFiles]\r\nportwatch.sys = 1\r\n";

    #[test]
    fn reads_files_ids_and_decorations() {
        let facts = InfFacts::parse(INF);
        assert_eq!(facts.source_files, ["portwatch.sys"]);
        assert_eq!(facts.hardware_ids, ["pw_portwatch"]);
        assert_eq!(facts.decorations, ["NTamd64.10.0...25319", "NTamd64.10.0...19041"]);
        assert_eq!(facts.lowest_build(), Some(19041));
    }

    #[test]
    fn an_undecorated_build_has_no_lowest_build() {
        let facts = InfFacts::parse("[Manufacturer]\r\n%M% = Models, NTamd64\r\n");
        assert_eq!(facts.lowest_build(), None);
    }
}
