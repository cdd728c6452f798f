//! A ProsQA question's text read back into its graph (the page draws it; `analyze` walks it).

/// A ProsQA question read back from its text: the facts and the query (for the page's graph).
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedQuestion {
    /// Node names in order of first mention.
    pub names: Vec<String>,
    /// Whether each node is a person (named without "Every").
    pub is_person: Vec<bool>,
    pub edges: Vec<(usize, usize)>,
    pub subject: usize,
    pub options: [usize; 2],
}

impl ParsedQuestion {
    /// The graph edges a decoded language chain walks ("Tom is a X.", "Every X is a Y.", and the
    /// final "### Tom is a Y." when it is an edge), in order; sentences that are no edge are skipped.
    pub fn path_edges(&self, text: &str) -> Vec<(usize, usize)> {
        let idx = |n: &str| self.names.iter().position(|x| x == n);
        text.split(['.', '\n', '#'])
            .filter_map(|s| {
                let w: Vec<&str> = s.split_whitespace().collect();
                let (p, c) = match w.as_slice() {
                    ["Every", p, "is", "a", c] | [p, "is", "a", c] => (idx(p)?, idx(c)?),
                    _ => return None,
                };
                self.edges.contains(&(p, c)).then_some((p, c))
            })
            .collect()
    }
}

/// Parses "F1. F2. ... Is X a A or B?" where each fact is "X is a Y." or "Every Y is a Z.".
/// The error names the sentence (1-based) that does not parse.
pub fn parse_question(text: &str) -> Result<ParsedQuestion, String> {
    let text = text.trim();
    let body = text.strip_suffix('?').ok_or("the question must end with `Is X a A or B?`")?;
    let (facts, query) = match body.rfind(". ") {
        Some(i) => (&body[..=i], body[i + 2..].trim()),
        None => ("", body.trim()),
    };
    let mut q = ParsedQuestion { names: Vec::new(), is_person: Vec::new(), edges: Vec::new(), subject: 0, options: [0, 0] };
    fn node(q: &mut ParsedQuestion, name: &str, person: bool) -> usize {
        match q.names.iter().position(|n| n == name) {
            Some(i) => {
                q.is_person[i] &= person;
                i
            }
            None => {
                q.names.push(name.to_string());
                q.is_person.push(person);
                q.names.len() - 1
            }
        }
    }
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric());
    let sentences: Vec<&str> = facts.split_terminator('.').map(str::trim).collect();
    for (i, s) in sentences.iter().enumerate() {
        let w: Vec<&str> = s.split_whitespace().collect();
        let bad = || format!("sentence {} `{s}.` is not a ProsQA fact (`Name is a concept.` or `Every concept is a concept.`)", i + 1);
        let (parent, child, person) = match w.as_slice() {
            ["Every", p, "is", "a", c] if word(p) && word(c) => (*p, *c, false),
            [p, "is", "a", c] if word(p) && word(c) => (*p, *c, true),
            _ => return Err(bad()),
        };
        let p = node(&mut q, parent, person);
        let c = node(&mut q, child, false);
        q.is_person[c] = false;
        q.edges.push((p, c));
    }
    let w: Vec<&str> = query.split_whitespace().collect();
    let ["Is", subject, "a", a, "or", b] = w.as_slice() else {
        return Err(format!("sentence {} `{query}?` is not the query `Is X a A or B?`", sentences.len() + 1));
    };
    let find = |n: &str| q.names.iter().position(|x| x == n).ok_or_else(|| format!("the query names `{n}`, which no fact mentions"));
    q.subject = find(subject)?;
    q.options = [find(a)?, find(b)?];
    Ok(q)
}
