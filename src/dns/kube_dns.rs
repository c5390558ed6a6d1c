//! kube-dns: our stub domains spliced as text into the `stubDomains` JSON
//! of the `kube-dns` ConfigMap, with a small JSON scanner that finds each
//! member's byte range, and our ownership record. See [`super`] for the
//! guarantees.

use super::*;

/// The value of [`KUBE_DNS_OWNERSHIP_KEY`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ownership {
    /// Our domains, as written into `stubDomains`.
    domains: Vec<String>,
    /// `stubDomains` did not exist before we added it.
    created_stub_domains: bool,
}

/// One `"key": value` member of a JSON object, by byte offsets.
struct Member {
    key: String,
    /// Offset of the key's opening quote.
    start: usize,
    /// Offset of the value's first byte.
    value_start: usize,
    /// Offset just past the value.
    end: usize,
}

/// A top-level JSON object, by byte offsets.
struct JsonObject {
    /// Offset of `{`.
    open: usize,
    members: Vec<Member>,
}

fn kube_dns_err_json(key: &str, e: &serde_json::Error) -> DnsError {
    let full = e.to_string();
    let problem = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    DnsError::InvalidJson {
        configmap: "kube-dns",
        key: key.to_string(),
        line: e.line(),
        column: e.column(),
        problem,
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parse and check `stubDomains` the way kube-dns does (a JSON object of
/// domain -> list of strings), then locate its members in the text.
fn parse_stub_domains(text: &str) -> Result<JsonObject, DnsError> {
    const EXPECTED: &str = "a JSON object mapping each domain to a list of nameserver strings";
    let shape = |problem: String| DnsError::JsonShape {
        configmap: "kube-dns",
        key: STUB_DOMAINS_KEY.to_string(),
        expected: EXPECTED,
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| kube_dns_err_json(STUB_DOMAINS_KEY, &e))?;
    let serde_json::Value::Object(map) = &value else {
        return Err(shape(format!("found {}", json_kind(&value))));
    };
    for (domain, servers) in map {
        let ok = matches!(servers, serde_json::Value::Array(a) if a.iter().all(serde_json::Value::is_string));
        if !ok {
            return Err(shape(format!(
                "`{domain}` maps to {}, not a list of strings",
                json_kind(servers)
            )));
        }
    }
    scan_object(text).ok_or_else(|| shape("could not locate the object's members".to_string()))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is `"`; returns the offset past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Offset just past the JSON value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let start = i;
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// Locate the members of the top-level object in already-validated JSON.
fn scan_object(text: &str) -> Option<JsonObject> {
    let b = text.as_bytes();
    let open = skip_ws(b, 0);
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = open + 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b'}' => return Some(JsonObject { open, members }),
            b',' => i += 1,
            b'"' => {
                let start = i;
                let key_end = skip_string(b, i)?;
                let key: String = serde_json::from_str(text.get(start..key_end)?).ok()?;
                i = skip_ws(b, key_end);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                let value_start = skip_ws(b, i + 1);
                let end = skip_value(b, value_start)?;
                members.push(Member {
                    key,
                    start,
                    value_start,
                    end,
                });
                i = end;
            }
            _ => return None,
        }
    }
}

/// Our members, `"<domain>": ["<ip>", "<ip>"]` each, joined by `sep`.
fn render_stub_members(ours: &[Forward], sep: &str) -> String {
    ours.iter()
        .map(|f| {
            let servers: Vec<String> = f
                .servers
                .iter()
                .map(|ip| serde_json::Value::String(ip.to_string()).to_string())
                .collect();
            format!(
                "{}: [{}]",
                serde_json::Value::String(f.domain.clone()),
                servers.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join(sep)
}

/// The separator our members get in `text`: `", "`, or, when the user's
/// object puts its closing brace on a line of its own, a comma, a newline and
/// the indentation of the user's last member, so ours line up with theirs.
fn member_separator(text: &str, last: &Member) -> String {
    let line_start = text[..last.start].rfind('\n').map_or(0, |p| p + 1);
    let indent = &text[line_start..last.start];
    let rest = text[last.end..].trim_start_matches([' ', '\t']);
    let newline = if rest.starts_with("\r\n") {
        "\r\n"
    } else if rest.starts_with('\n') {
        "\n"
    } else {
        return ", ".to_string();
    };
    if indent.bytes().all(|b| b == b' ' || b == b'\t') {
        format!(",{newline}{indent}")
    } else {
        ", ".to_string()
    }
}

/// Delete the members `drop` selects, each with the separator before it (or,
/// for a leading member, the whitespace before the next kept one); every
/// other byte is kept. Returns the new text and how many members remain.
fn remove_members(text: &str, obj: &JsonObject, drop: impl Fn(&str) -> bool) -> (String, usize) {
    let kept: Vec<usize> = (0..obj.members.len())
        .filter(|&i| !drop(&obj.members[i].key))
        .collect();
    if kept.len() == obj.members.len() {
        return (text.to_string(), kept.len());
    }
    let m = &obj.members;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..m[0].start]);
    for (n, &k) in kept.iter().enumerate() {
        if n > 0 {
            out.push_str(&text[m[k - 1].end..m[k].start]);
        }
        out.push_str(&text[m[k].start..m[k].end]);
    }
    out.push_str(&text[m[m.len() - 1].end..]);
    (out, kept.len())
}

pub(super) fn kube_dns_remove(
    data: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, DnsError> {
    let Some(record) = data.get(KUBE_DNS_OWNERSHIP_KEY) else {
        return Ok(data.clone());
    };
    let record: Ownership =
        serde_json::from_str(record).map_err(|e| DnsError::OwnershipRecord {
            problem: e.to_string(),
        })?;
    let ours: BTreeSet<String> = record.domains.iter().map(|d| normalize_domain(d)).collect();
    let mut out = data.clone();
    out.remove(KUBE_DNS_OWNERSHIP_KEY);
    if let Some(text) = data.get(STUB_DOMAINS_KEY) {
        let obj = parse_stub_domains(text)?;
        let (new, remaining) = remove_members(text, &obj, |k| ours.contains(&normalize_domain(k)));
        if record.created_stub_domains && remaining == 0 {
            out.remove(STUB_DOMAINS_KEY);
        } else {
            out.insert(STUB_DOMAINS_KEY.to_string(), new);
        }
    }
    Ok(out)
}

pub(super) fn kube_dns_merge(
    data: &BTreeMap<String, String>,
    ours: &[Forward],
) -> Result<BTreeMap<String, String>, DnsError> {
    let mut out = kube_dns_remove(data)?;
    let created = !out.contains_key(STUB_DOMAINS_KEY);
    let new = match out.get(STUB_DOMAINS_KEY) {
        None => format!("{{{}}}", render_stub_members(ours, ", ")),
        Some(text) => {
            let obj = parse_stub_domains(text)?;
            for m in &obj.members {
                let domain = normalize_domain(&m.key);
                if ours.iter().any(|f| f.domain == domain) {
                    let servers: Vec<String> =
                        serde_json::from_str(&text[m.value_start..m.end]).unwrap_or_default();
                    return Err(DnsError::Conflict {
                        configmap: "kube-dns",
                        location: format!("key `{STUB_DOMAINS_KEY}`"),
                        domain,
                        what: format!("forwards `{}` to {}", m.key, servers.join(", ")),
                    });
                }
            }
            // After the user's last member (or inside an empty object), so
            // every user byte stays where it was.
            let (at, lead, sep) = match obj.members.last() {
                Some(last) => {
                    let sep = member_separator(text, last);
                    (last.end, sep.clone(), sep)
                }
                None => (obj.open + 1, String::new(), ", ".to_string()),
            };
            let members = render_stub_members(ours, &sep);
            format!("{}{lead}{members}{}", &text[..at], &text[at..])
        }
    };
    let record = Ownership {
        domains: ours.iter().map(|f| f.domain.clone()).collect(),
        created_stub_domains: created,
    };
    out.insert(STUB_DOMAINS_KEY.to_string(), new);
    out.insert(
        KUBE_DNS_OWNERSHIP_KEY.to_string(),
        serde_json::to_string(&record).expect("a struct of strings and a bool serialises"),
    );
    Ok(out)
}

pub(super) fn kube_dns_forwards(data: &BTreeMap<String, String>) -> Result<Vec<Forward>, DnsError> {
    let mut out = Vec::new();
    if let Some(text) = data.get(STUB_DOMAINS_KEY) {
        let obj = parse_stub_domains(text)?;
        for m in &obj.members {
            let servers: Vec<String> = serde_json::from_str(&text[m.value_start..m.end])
                .map_err(|e| kube_dns_err_json(STUB_DOMAINS_KEY, &e))?;
            let servers: Vec<IpAddr> = servers.iter().filter_map(|s| server_ip(s)).collect();
            if !servers.is_empty() {
                out.push(Forward {
                    domain: normalize_domain(&m.key),
                    servers,
                });
            }
        }
    }
    if let Some(text) = data.get(UPSTREAM_NAMESERVERS_KEY) {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| kube_dns_err_json(UPSTREAM_NAMESERVERS_KEY, &e))?;
        let servers: Vec<String> =
            serde_json::from_value(value.clone()).map_err(|_| DnsError::JsonShape {
                configmap: "kube-dns",
                key: UPSTREAM_NAMESERVERS_KEY.to_string(),
                expected: "a JSON list of nameserver strings",
                problem: format!("found {}", json_kind(&value)),
            })?;
        let servers: Vec<IpAddr> = servers.iter().filter_map(|s| server_ip(s)).collect();
        if !servers.is_empty() {
            out.push(Forward {
                domain: ".".to_string(),
                servers,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
