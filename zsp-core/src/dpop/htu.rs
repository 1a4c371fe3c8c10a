//! The `htu` claim: an HTTP(S) URI without query and fragment, compared after syntax- and
//! scheme-based normalisation (RFC 3986 §6.2.2–6.2.3, RFC 9449 §4.3 step 9).
//!
//! Invariants:
//! * two URIs compare equal only if their normal forms are byte-equal;
//! * anything this parser does not fully understand (userinfo, percent-encoded or non-ASCII
//!   hosts, control characters, bad percent escapes, non-numeric ports, schemes other than
//!   `http`/`https`) is an error, never a best guess, so a verifier fails closed.

/// Why a URI cannot serve as `htu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HtuError {
    /// Not an absolute `http` or `https` URI with an authority.
    #[error("not an absolute http(s) URI")]
    NotHttp,
    /// The authority has userinfo, an empty or unsupported host, or a bad port.
    #[error("unsupported authority")]
    Authority,
    /// A character or percent escape that is not allowed in a URI path.
    #[error("invalid path")]
    Path,
    /// Longer than [`MAX_HTU_LEN`].
    #[error("URI too long")]
    TooLong,
}

/// Longest URI accepted for normalisation; request lines longer than this are unusual and a
/// proof is bounded anyway.
pub const MAX_HTU_LEN: usize = 4096;

/// Strips query and fragment from `uri`, then normalises it: scheme and host lower-cased,
/// default ports (`:80` for http, `:443` for https) and empty ports removed, percent escapes
/// upper-cased with unreserved characters decoded, dot segments removed, and an empty path
/// made `/`.
///
/// ```
/// use zsp_core::dpop::normalize_htu;
/// assert_eq!(
///     normalize_htu("HTTPS://Example.COM:443/a/./b/../c%7e%2f?q=1#f").unwrap(),
///     "https://example.com/a/c~%2F"
/// );
/// assert_eq!(normalize_htu("http://h:8080").unwrap(), "http://h:8080/");
/// assert!(normalize_htu("ftp://h/").is_err());
/// ```
pub fn normalize_htu(uri: &str) -> Result<String, HtuError> {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    normalize_absolute(&uri[..end])
}

/// Whether `uri` carries a query or fragment part.
pub(crate) fn has_query_or_fragment(uri: &str) -> bool {
    uri.contains(['?', '#'])
}

fn normalize_absolute(uri: &str) -> Result<String, HtuError> {
    if uri.len() > MAX_HTU_LEN {
        return Err(HtuError::TooLong);
    }
    let (scheme, rest) = uri.split_once("://").ok_or(HtuError::NotHttp)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err(HtuError::NotHttp),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = normalize_authority(authority, default_port)?;
    let path = normalize_path(path)?;
    let mut out = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&authority);
    out.push_str(&path);
    Ok(out)
}

fn normalize_authority(authority: &str, default_port: &str) -> Result<String, HtuError> {
    // Userinfo has no place in a request target, and '%' in a host would need IDNA-aware
    // handling: refusing both keeps equality decidable.
    if authority.contains(['@', '%']) || authority.is_empty() {
        return Err(HtuError::Authority);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or(HtuError::Authority)?;
        let (inner, after) = v6.split_at(close);
        let after = &after[1..];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(HtuError::Authority);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HtuError::Authority)?),
        };
        (&authority[..close + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')));
    if !host_ok {
        return Err(HtuError::Authority);
    }
    let mut out = host.to_ascii_lowercase();
    match port {
        None | Some("") => {}
        Some(p) => {
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HtuError::Authority);
            }
            let n: u16 = p.parse().map_err(|_| HtuError::Authority)?;
            let canonical = n.to_string();
            if canonical != default_port {
                out.push(':');
                out.push_str(&canonical);
            }
        }
    }
    Ok(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_path_char(b: u8) -> bool {
    // pchar (RFC 3986 §3.3) minus '%', plus '/'.
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@' | b'/'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn normalize_path(path: &str) -> Result<String, HtuError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len() + 1);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex).ok_or(HtuError::Path)?;
            let lo = bytes.get(i + 2).copied().and_then(hex).ok_or(HtuError::Path)?;
            let decoded = hi << 4 | lo;
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(hi)]));
                out.push(char::from(HEX[usize::from(lo)]));
            }
            i += 3;
        } else if is_path_char(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(HtuError::Path);
        }
    }
    // Dot segments are removed after decoding, so "%2E%2E" counts as "..", as §6.2.2.3 orders.
    let mut path = remove_dot_segments(&out);
    if path.is_empty() {
        path.push('/');
    }
    Ok(path)
}

/// RFC 3986 §5.2.4, over whole segments.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let body = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if trailing_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3986_6_2_2_case_percent_and_dot_segments() {
        let cases = [
            ("HTTPS://Example.COM:443/a/./b", "https://example.com/a/b"),
            ("https://example.com/a/b", "https://example.com/a/b"),
            ("http://example.com:80", "http://example.com/"),
            ("http://example.com:", "http://example.com/"),
            ("http://example.com:0080/x", "http://example.com/x"),
            ("https://example.com:80/x", "https://example.com:80/x"),
            ("https://h/%7euser/%41%2f%2F", "https://h/~user/A%2F%2F"),
            ("https://h/a/b/c/./../../g", "https://h/a/g"),
            ("https://h/mid/content=5/../6", "https://h/mid/6"),
            ("https://h/a/..", "https://h/"),
            ("https://h/a/.", "https://h/a/"),
            ("https://h/../../x", "https://h/x"),
            ("https://h/%2E%2E/x", "https://h/x"),
            ("https://h/a//b", "https://h/a//b"),
            ("https://[::1]:443/x", "https://[::1]/x"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
            ("https://h/p?q#f", "https://h/p"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_htu(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn unusual_uris_are_refused() {
        for bad in [
            "",
            "/relative",
            "h/x",
            "ftp://h/x",
            "https://user@h/x",
            "https://h%41/x",
            "https:///x",
            "https://h:99999/x",
            "https://h:-1/x",
            "https://h/%zz",
            "https://h/%4",
            "https://h/a b",
            "https://h/\u{e9}",
            "https://[::1/x",
            "https://[]/x",
            "https://[::1]x/x",
        ] {
            assert!(normalize_htu(bad).is_err(), "{bad:?}");
        }
    }
}
