//! What a config value may contain when it ends up in a Kubernetes object or
//! in the CockroachDB start command: the API server's own rules, written out
//! so that a value the API server (or the kubelet) would refuse is refused
//! here, with a line number, before anything is generated.
//!
//! Pure string checks; no I/O, never panics. Each rule names its source:
//! - label values and qualified names: k8s.io/apimachinery
//!   `pkg/util/validation/validation.go` (`IsValidLabelValue`,
//!   `IsQualifiedName`), annotations as `ValidateAnnotations` in
//!   `pkg/api/validation/objectmeta.go` checks them (key lower-cased first,
//!   256 KiB in total);
//! - quantities: k8s.io/apimachinery `pkg/api/resource/quantity.go`
//!   (`ParseQuantity`: `<signedNumber><suffix>`, binary `Ki`..`Ei`, decimal
//!   `n u m "" k M G T P E`, or an exponent `e<int>`/`E<int>`);
//! - image references: the distribution reference grammar
//!   (github.com/distribution/reference `regexp.go`), which the kubelet uses to
//!   parse `image` (an unparsable one is `InvalidImageName`).

/// At most this many bytes of annotation keys and values on one object
/// (`TotalAnnotationSizeLimitB` in apimachinery).
pub const ANNOTATIONS_TOTAL_LIMIT: usize = 256 * 1024;

/// The rule text for label values, for messages.
pub const LABEL_VALUE_RULE: &str = "at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// A Kubernetes label value (may not be empty here: every place we use one
/// needs a value).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Why an annotation key is not a qualified name, if it is not one.
pub fn annotation_key_problem(key: &str) -> Option<String> {
    // ValidateAnnotations lower-cases the key before IsQualifiedName.
    let key = key.to_ascii_lowercase();
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key.as_str()),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("the prefix before '/' must not be empty".into());
        }
        if !super::is_dns_subdomain(prefix) {
            return Some(format!(
                "the prefix {prefix:?} must be a DNS subdomain (lower-case dot-separated labels, at most 253 characters)"
            ));
        }
    }
    if name.is_empty() {
        return Some("the name part must not be empty".into());
    }
    if name.len() > 63 {
        return Some("the name part must be at most 63 characters".into());
    }
    let b = name.as_bytes();
    let ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Some(format!(
            "the name part {name:?} must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    None
}

/// A parsed Kubernetes quantity: its value in base units (bytes, cores).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    pub value: f64,
}

impl Quantity {
    /// The value rounded up to a whole number, as `Quantity.Value()` does.
    pub fn ceil_u64(self) -> Option<u64> {
        let v = self.value.ceil();
        (v.is_finite() && (0.0..1.8e19).contains(&v)).then_some(v as u64)
    }
}

/// Why a string is not a Kubernetes quantity. The message continues "it",
/// as in "\"8GB\" is not a Kubernetes quantity: it has an unknown suffix".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("is empty")]
    Empty,
    #[error("does not start with a number")]
    NoNumber,
    #[error("has an invalid exponent {suffix:?}")]
    InvalidExponent { suffix: String },
    #[error("has an exponent out of range: {suffix:?}")]
    ExponentOutOfRange { suffix: String },
    #[error(
        "has an unknown suffix {suffix:?}; the suffixes are Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent such as e3"
    )]
    UnknownSuffix { suffix: String },
    #[error("is not a number")]
    NotANumber,
    #[error("is out of range")]
    OutOfRange,
    #[error("must not be negative")]
    Negative,
}

/// Parses a quantity the way `resource.ParseQuantity` does. Errors say why.
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(QuantityError::Empty);
    }
    let mut pos = 0;
    let negative = match b[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &s[int_start..pos];
    let mut frac_digits = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &s[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(QuantityError::NoNumber);
    }
    let suffix = &s[pos..];
    let multiplier: f64 = match suffix {
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ if suffix.starts_with(['e', 'E']) => {
            let exp = &suffix[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(QuantityError::InvalidExponent {
                    suffix: suffix.to_string(),
                });
            }
            let e: i32 = exp
                .parse()
                .ok()
                .filter(|e: &i32| (-64..=64).contains(e))
                .ok_or_else(|| QuantityError::ExponentOutOfRange {
                    suffix: suffix.to_string(),
                })?;
            10f64.powi(e)
        }
        _ => {
            return Err(QuantityError::UnknownSuffix {
                suffix: suffix.to_string(),
            });
        }
    };
    let number: f64 = format!(
        "{}.{}",
        if int_digits.is_empty() {
            "0"
        } else {
            int_digits
        },
        if frac_digits.is_empty() {
            "0"
        } else {
            frac_digits
        }
    )
    .parse()
    .map_err(|_| QuantityError::NotANumber)?;
    let value = number * multiplier;
    if !value.is_finite() || value >= 9.2e18 {
        return Err(QuantityError::OutOfRange);
    }
    if negative && value != 0.0 {
        return Err(QuantityError::Negative);
    }
    Ok(Quantity { value })
}

/// Why `image` is not an image reference the kubelet can parse, if it is not.
pub fn image_problem(image: &str) -> Option<String> {
    if image.is_empty() {
        return Some("must not be empty".into());
    }
    if let Some(c) = image
        .chars()
        .find(|c| !c.is_ascii_graphic() || c.is_whitespace())
    {
        return Some(format!(
            "contains {c:?} (U+{:04X}); an image reference is printable ASCII without spaces",
            c as u32
        ));
    }
    // name[:tag][@digest]
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest
        && !is_digest(d)
    {
        return Some(format!(
            "has an invalid digest {d:?} (expected algorithm:hex, e.g. sha256:<64 hex digits>)"
        ));
    }
    // A ':' after the last '/' starts the tag; one before it is a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag
        && !is_tag(t)
    {
        return Some(format!(
            "has an invalid tag {t:?} (at most 128 characters: letters, digits, '_', '.', '-', not starting with '.' or '-')"
        ));
    }
    if name.len() > 255 {
        return Some("has a repository name longer than 255 characters".into());
    }
    let components: Vec<&str> = name.split('/').collect();
    let all_paths = components.iter().all(|c| is_path_component(c));
    let domain_then_paths = components.len() > 1
        && is_domain_and_port(components[0])
        && components[1..].iter().all(|c| is_path_component(c));
    if !(all_paths || domain_then_paths) {
        return Some(format!(
            "has an invalid repository name {name:?} (path components are lower-case letters and digits separated by '.', '_', '__' or '-', optionally after a registry host[:port]/)"
        ));
    }
    None
}

fn is_path_component(s: &str) -> bool {
    // alphanumeric (separator alphanumeric)*, separator = [._] | __ | -+
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[sep_start..i];
        let ok =
            matches!(sep, "." | "_" | "__") || (!sep.is_empty() && sep.bytes().all(|c| c == b'-'));
        if !ok {
            return false;
        }
    }
}

fn is_domain_and_port(s: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = s.strip_prefix('[') {
        // An IPv6 address in brackets.
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let ok = !addr.is_empty() && addr.bytes().all(|c| c.is_ascii_hexdigit() || c == b':');
        let port = match after {
            "" => None,
            a => match a.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        (ok, port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ok = host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
        (ok, port)
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_digest(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|c| c.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Quotes `s` for a POSIX shell when it holds anything but characters that
/// are never special (as Python's `shlex.quote`): letters, digits and
/// `@%+=:,./_-`. Inside single quotes nothing is special; a `'` itself is
/// written as `'"'"'`.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_follow_parse_quantity() {
        let v = |s: &str| parse_quantity(s).map(|q| q.value);
        assert_eq!(v("8Gi"), Ok(8.0 * 1024f64.powi(3)));
        assert_eq!(v("1.5Gi"), Ok(1.5 * 1024f64.powi(3)));
        assert_eq!(v("500m"), Ok(0.5));
        assert_eq!(v(".5"), Ok(0.5));
        assert_eq!(v("5."), Ok(5.0));
        assert_eq!(v("+2"), Ok(2.0));
        assert_eq!(v("1e3"), Ok(1000.0));
        assert_eq!(v("1E-3"), Ok(0.001));
        assert_eq!(v("0"), Ok(0.0));
        assert_eq!(v("-0"), Ok(0.0));
        for bad in [
            "",
            "8GB",
            "1..2",
            ".",
            "-1",
            "Gi",
            "1e",
            "1e+",
            "1ee3",
            "1 Gi",
            "1Gi ",
            "1e99999",
            "99999999999999999999999Ei",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad:?}");
        }
        let suffix = |s: &str| s.to_string();
        assert_eq!(v(""), Err(QuantityError::Empty));
        assert_eq!(v("Gi"), Err(QuantityError::NoNumber));
        assert_eq!(v("-1"), Err(QuantityError::Negative));
        assert_eq!(
            v("99999999999999999999999Ei"),
            Err(QuantityError::OutOfRange)
        );
        assert_eq!(
            v("8GB"),
            Err(QuantityError::UnknownSuffix {
                suffix: suffix("GB")
            })
        );
        assert_eq!(
            v("1e+"),
            Err(QuantityError::InvalidExponent {
                suffix: suffix("e+")
            })
        );
        assert_eq!(
            v("1e99999"),
            Err(QuantityError::ExponentOutOfRange {
                suffix: suffix("e99999")
            })
        );
    }

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        for good in [
            "cockroachdb/cockroach:v25.4.1",
            "cockroach",
            "localhost:5000/crdb/cockroach:latest",
            "registry.example.com/a/b/c",
            "gcr.io/x/cockroach@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "[::1]:5000/x:1",
            "a__b/c-d--e:_tag",
        ] {
            assert_eq!(image_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "cockroachdb/cockroach:v25.4.1\u{200b}",
            "cockroachdb/\u{200b}cockroach",
            "cockroachdb/Cockroach",
            "cockroach db",
            "cockroach:",
            "cockroach:-x",
            "cockroach@sha256:xyz",
            "a//b",
            "a/b/",
            "$(id)/x",
            "x;y",
        ] {
            assert!(image_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn annotation_keys_are_qualified_names() {
        for good in ["a", "example.com/x", "Example.COM/X_y.z", "x-1"] {
            assert_eq!(annotation_key_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "/x",
            "example.com/",
            "a/b/c",
            "-x",
            "x y",
            "ex_ample.com/x",
            &"x".repeat(64),
        ] {
            assert!(annotation_key_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn shell_quote_leaves_safe_words_alone_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("region=us-east1,zone=a"),
            "region=us-east1,zone=a"
        );
        assert_eq!(shell_quote("25%"), "25%");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
    }
}
