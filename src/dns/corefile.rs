//! CoreDNS: enough of the Caddyfile syntax (lexer and parser) to find
//! server blocks and `forward` directives, conflict detection against the
//! user's blocks, and our marked section at the end of the Corefile. See
//! [`super`] for the guarantees.

use super::*;

#[derive(Debug)]
struct Token {
    text: String,
    line: usize,
    quoted: bool,
}

impl Token {
    fn is_open(&self) -> bool {
        !self.quoted && self.text == "{"
    }
    fn is_close(&self) -> bool {
        !self.quoted && self.text == "}"
    }
}

#[derive(Debug)]
pub(super) struct Directive {
    name: String,
    args: Vec<String>,
    line: usize,
}

#[derive(Debug)]
pub(super) struct ServerBlock {
    /// Zone keys as written, e.g. `.:53`, `example.com`, `dns://foo:53`.
    pub(super) keys: Vec<String>,
    pub(super) line: usize,
    /// Top-level directives (sub-blocks are parsed for syntax, not kept).
    pub(super) body: Vec<Directive>,
}

/// A parse error before we know which ConfigMap key it came from.
pub(super) struct ParseError {
    line: usize,
    problem: String,
}

impl ParseError {
    fn new(line: usize, problem: impl Into<String>) -> Self {
        Self {
            line,
            problem: problem.into(),
        }
    }

    pub(super) fn into_error(self, provider: DnsProvider, key: &str) -> DnsError {
        DnsError::Corefile {
            configmap: provider.configmap_name(),
            key: key.to_string(),
            line: self.line,
            problem: self.problem,
        }
    }
}

/// Split into tokens as CoreDNS's Caddyfile lexer does: whitespace
/// separated; `"..."` quoted (a backslash escapes only `"`); `#` outside
/// quotes comments out the rest of the line, even inside a word.
fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            line += 1;
            chars.next();
        } else if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            while chars.peek().is_some_and(|&c| c != '\n') {
                chars.next();
            }
        } else if c == '"' {
            let start = line;
            chars.next();
            let mut s = String::new();
            let mut escaped = false;
            loop {
                let Some(ch) = chars.next() else {
                    return Err(ParseError::new(start, "quoted string is never closed"));
                };
                if !escaped && ch == '\\' {
                    escaped = true;
                    continue;
                }
                if !escaped && ch == '"' {
                    break;
                }
                if ch == '\n' {
                    line += 1;
                }
                if escaped && ch != '"' {
                    s.push('\\');
                }
                s.push(ch);
                escaped = false;
            }
            tokens.push(Token {
                text: s,
                line: start,
                quoted: true,
            });
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '#' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            tokens.push(Token {
                text: s,
                line,
                quoted: false,
            });
        }
    }
    Ok(tokens)
}

/// Directives until the `}` that closes the server block opened at line
/// `opened` (or, with `None`, until the end of input). As in Caddy, a
/// directive runs to the end of its line, plus any `{ ... }` it opens (nested
/// braces are counted, not parsed, so depth costs no stack).
fn parse_block(
    toks: &[Token],
    i: &mut usize,
    opened: Option<usize>,
) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    loop {
        let Some(t) = toks.get(*i) else {
            return match opened {
                Some(line) => Err(ParseError::new(line, "`{` opened here is never closed")),
                None => Ok(out),
            };
        };
        if t.is_close() {
            if opened.is_none() {
                return Err(ParseError::new(t.line, "`}` without a matching `{`"));
            }
            *i += 1;
            return Ok(out);
        }
        if t.is_open() {
            return Err(ParseError::new(
                t.line,
                "`{` where a plugin name was expected",
            ));
        }
        let line = t.line;
        let name = t.text.clone();
        *i += 1;
        let mut args = Vec::new();
        let mut nesting = 0usize;
        let mut open_line = line;
        while let Some(t) = toks.get(*i) {
            if t.is_open() {
                if nesting == 0 {
                    open_line = t.line;
                }
                nesting += 1;
            } else if nesting == 0 && t.line != line {
                break;
            } else if t.is_close() {
                if nesting == 0 {
                    return Err(ParseError::new(
                        t.line,
                        format!(
                            "`}}` on the same line as plugin `{name}`; a closing brace must be on its own line"
                        ),
                    ));
                }
                nesting -= 1;
            } else if nesting == 0 {
                args.push(t.text.clone());
            }
            *i += 1;
        }
        if nesting > 0 {
            return Err(ParseError::new(
                open_line,
                "`{` opened here is never closed",
            ));
        }
        out.push(Directive { name, args, line });
    }
}

/// The server blocks of a Corefile (top-level `import` lines and snippets
/// are skipped). As in Caddy, a block's keys end at the end of their line
/// unless the last one ends with a comma.
pub(super) fn parse_corefile(text: &str) -> Result<Vec<ServerBlock>, ParseError> {
    let toks = tokenize(text)?;
    let mut i = 0;
    let mut blocks = Vec::new();
    while let Some(t) = toks.get(i) {
        if t.is_close() {
            return Err(ParseError::new(t.line, "`}` without a matching `{`"));
        }
        if t.is_open() {
            return Err(ParseError::new(
                t.line,
                "`{` without a server block key (zone) before it",
            ));
        }
        let line = t.line;
        if !t.quoted && t.text == "import" {
            i += 1;
            while toks.get(i).is_some_and(|t| t.line == line) {
                i += 1;
            }
            continue;
        }
        let mut keys: Vec<String> = Vec::new();
        let mut key_line = line;
        while let Some(t) = toks.get(i) {
            let continued = keys.last().is_some_and(|k| k.ends_with(','));
            if t.is_open() || (t.line != key_line && !continued) {
                break;
            }
            if t.is_close() {
                return Err(ParseError::new(t.line, "`}` without a matching `{`"));
            }
            keys.push(t.text.clone());
            key_line = t.line;
            i += 1;
        }
        if !toks.get(i).is_some_and(Token::is_open) {
            return Err(ParseError::new(
                line,
                format!(
                    "server block `{}` is not followed by `{{`; crdb-multiregion can only add a block to a Corefile whose server blocks are all in braces",
                    keys.join(" ")
                ),
            ));
        }
        i += 1;
        let body = parse_block(&toks, &mut i, Some(line))?;
        let snippet = keys.len() == 1 && keys[0].starts_with('(') && keys[0].ends_with(')');
        if !snippet {
            let keys = keys
                .iter()
                .flat_map(|k| k.split(','))
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            blocks.push(ServerBlock { keys, line, body });
        }
    }
    Ok(blocks)
}

/// Plugin lines without a surrounding server block (an AKS `.override` key).
pub(super) fn parse_directives(text: &str) -> Result<Vec<Directive>, ParseError> {
    let toks = tokenize(text)?;
    let mut i = 0;
    parse_block(&toks, &mut i, None)
}

/// The zone a server block key serves on plain DNS port 53 (no port means
/// the default, 53), normalised; `None` for other ports and transports.
fn zone_of(key: &str) -> Option<String> {
    let rest = match key.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("dns") => rest,
        Some(_) => return None,
        None => key,
    };
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            if port.parse::<u32>() != Ok(53) {
                return None;
            }
            host
        }
        _ => rest,
    };
    Some(normalize_domain(host))
}

/// The forwards a server block configures, with the line of each `forward`.
pub(super) fn block_forwards(block: &ServerBlock) -> Vec<(Forward, usize)> {
    let mut out = Vec::new();
    for zone in block.keys.iter().filter_map(|k| zone_of(k)) {
        for d in block.body.iter().filter(|d| d.name == "forward") {
            let Some((from, to)) = d.args.split_first() else {
                continue;
            };
            let from = normalize_domain(from.strip_prefix("dns://").unwrap_or(from));
            let domain = if from == "." { zone.clone() } else { from };
            let servers: Vec<IpAddr> = to.iter().filter_map(|s| server_ip(s)).collect();
            if !servers.is_empty() {
                out.push((Forward { domain, servers }, d.line));
            }
        }
    }
    out
}

/// The user's blocks must neither serve nor forward any of our domains.
pub(super) fn check_conflicts(
    blocks: &[ServerBlock],
    ours: &[Forward],
    provider: DnsProvider,
    key: &str,
) -> Result<(), DnsError> {
    let wanted: BTreeSet<&str> = ours.iter().map(|f| f.domain.as_str()).collect();
    for block in blocks {
        for k in &block.keys {
            if let Some(zone) = zone_of(k)
                && wanted.contains(zone.as_str())
            {
                return Err(DnsError::Conflict {
                    configmap: provider.configmap_name(),
                    location: format!("key `{key}`, line {},", block.line),
                    what: format!("has a server block for `{k}`"),
                    domain: zone,
                });
            }
        }
        for (f, line) in block_forwards(block) {
            if wanted.contains(f.domain.as_str()) {
                return Err(DnsError::Conflict {
                    configmap: provider.configmap_name(),
                    location: format!("key `{key}`, line {line},"),
                    what: format!("forwards `{}` to {}", f.domain, ip_list(&f.servers)),
                    domain: f.domain,
                });
            }
        }
    }
    Ok(())
}

/// Our server blocks, each ending in a newline.
pub(super) fn render_blocks(ours: &[Forward], opts: &ForwardOptions) -> String {
    let mut s = String::new();
    for f in ours {
        let servers: Vec<String> = f.servers.iter().map(ToString::to_string).collect();
        s.push_str(&format!("{}:53 {{\n    errors\n", f.domain));
        if opts.cache_seconds > 0 {
            s.push_str(&format!("    cache {}\n", opts.cache_seconds));
        }
        s.push_str(&format!("    forward . {}", servers.join(" ")));
        if opts.force_tcp {
            s.push_str(" {\n        force_tcp\n    }\n");
        } else {
            s.push('\n');
        }
        s.push_str("}\n");
    }
    s
}

/// Byte offsets of our section: start of the BEGIN line, end of the END
/// line's text (before its newline, if any).
fn find_section(text: &str) -> Result<Option<(usize, usize)>, DnsError> {
    let damaged = |problem: &str| DnsError::DamagedSection {
        configmap: "coredns",
        key: COREFILE_KEY.to_string(),
        problem: problem.to_string(),
    };
    let mut begin = None;
    let mut end = None;
    let mut offset = 0;
    for line in text.split('\n') {
        let trimmed = line.trim();
        if trimmed == BEGIN_MARKER {
            if begin.is_some() {
                return Err(damaged("the BEGIN marker appears twice"));
            }
            begin = Some(offset);
        } else if trimmed == END_MARKER {
            if begin.is_none() {
                return Err(damaged("an END marker comes before any BEGIN marker"));
            }
            if end.is_some() {
                return Err(damaged("the END marker appears twice"));
            }
            end = Some(offset + line.len());
        }
        offset += line.len() + 1;
    }
    match (begin, end) {
        (None, _) => Ok(None),
        (Some(_), None) => Err(damaged("a BEGIN marker without an END marker")),
        (Some(b), Some(e)) => Ok(Some((b, e))),
    }
}

/// The Corefile without our section and the separator [`corefile_merge`]
/// added before it.
pub(super) fn corefile_remove(text: &str) -> Result<String, DnsError> {
    let Some((b, e)) = find_section(text)? else {
        return Ok(text.to_string());
    };
    let bytes = text.as_bytes();
    let blank_line_before = b >= 2 && bytes[b - 2] == b'\n' && bytes[b - 1] == b'\n';
    if bytes.get(e) == Some(&b'\n') {
        // Merged into a Corefile that ended with a newline (or was empty):
        // "\n" (a blank line) + section + "\n".
        let start = if blank_line_before { b - 1 } else { b };
        Ok(format!("{}{}", &text[..start], &text[e + 1..]))
    } else {
        // Our END line is the last line, without a newline: the original did
        // not end with one and we added "\n\n" before the section.
        let start = if blank_line_before {
            b - 2
        } else {
            b.saturating_sub(1)
        };
        Ok(text[..start].to_string())
    }
}

pub(super) fn corefile_merge(
    text: &str,
    ours: &[Forward],
    opts: &ForwardOptions,
) -> Result<String, DnsError> {
    let base = corefile_remove(text)?;
    let blocks =
        parse_corefile(&base).map_err(|e| e.into_error(DnsProvider::CoreDns, COREFILE_KEY))?;
    check_conflicts(&blocks, ours, DnsProvider::CoreDns, COREFILE_KEY)?;
    let section = format!("{BEGIN_MARKER}\n{}{END_MARKER}", render_blocks(ours, opts));
    Ok(if base.is_empty() {
        format!("{section}\n")
    } else if base.ends_with('\n') {
        format!("{base}\n{section}\n")
    } else {
        format!("{base}\n\n{section}")
    })
}

#[cfg(test)]
mod tests;
