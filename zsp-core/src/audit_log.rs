//! [`JsonLinesAudit`]: the audit record as one JSON object per line, written to any
//! `io::Write` (a file of its own, usually).
//!
//! The line is formatted by hand into a reused buffer (no generic field machinery), which is
//! what makes it cheap; strings are escaped as RFC 8259 requires, so a claim can never break
//! out of its field or its line.

use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::audit::{AuditDecision, AuditEvent, AuditSink, TokenAudit};
use crate::grant::Parsed;

/// Writes each audit event as one JSON line through a buffered writer.
///
/// Lines are buffered (8 KiB by default): call [`flush`](Self::flush) at shutdown, or drop the
/// sink, to write out the rest; [`with_buffer`](Self::with_buffer)`(out, 0)` writes each line
/// at once.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use zsp_core::audit::{AuditDecision, AuditEvent, AuditSink, JsonLinesAudit};
///
/// #[derive(Clone, Default)]
/// struct Shared(Arc<Mutex<Vec<u8>>>);
/// impl std::io::Write for Shared {
///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
///         self.0.lock().unwrap().extend_from_slice(b);
///         Ok(b.len())
///     }
///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// }
///
/// let out = Shared::default();
/// let audit = JsonLinesAudit::new(out.clone());
/// audit.record(&AuditEvent {
///     decision: AuditDecision::Allow, reason: "ok", iss: Some("https://broker"),
///     sub: Some("svc-a"), client_id: None, jti: Some("j-1"), method: "GET",
///     route: Some("/orders/{id}"), scopes: Some("orders:read"), elapsed_us: 3,
/// });
/// audit.flush().unwrap();
/// let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
/// let v: serde_json::Value = serde_json::from_str(&line).unwrap();
/// assert_eq!(v["decision"], "allow");
/// assert_eq!(v["route"], "/orders/{id}");
/// assert!(v.get("client_id").is_none());
/// // With a verifier: Verifier::builder(policy, keys).audit_sink(Arc::new(audit))
/// ```
pub struct JsonLinesAudit<W: Write + Send + 'static> {
    out: Mutex<(BufWriter<W>, Vec<u8>)>,
}

impl<W: Write + Send + 'static> std::fmt::Debug for JsonLinesAudit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesAudit").finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> JsonLinesAudit<W> {
    /// Audit lines to `out`, buffered (8 KiB).
    pub fn new(out: W) -> Self {
        Self::with_buffer(out, 8 * 1024)
    }

    /// Audit lines to `out` through a buffer of `capacity` bytes. With 0, every line is
    /// written as it is recorded (one write per decision): for an audit log that must not
    /// lose its last lines when the process is killed.
    pub fn with_buffer(out: W, capacity: usize) -> Self {
        Self {
            out: Mutex::new((BufWriter::with_capacity(capacity, out), Vec::with_capacity(512))),
        }
    }

    /// Writes out buffered lines.
    pub fn flush(&self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).0.flush()
    }
}

impl<W: Write + Send + 'static> JsonLinesAudit<W> {
    /// Writes one line that `fill` appends to an empty, reused buffer (which must end it with
    /// a newline).
    pub(crate) fn write_line(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let (out, line) = &mut *guard;
        line.clear();
        fill(line);
        // An audit write that fails cannot undo the decision; it is reported, not raised.
        if let Err(e) = out.write_all(line) {
            tracing::warn!(target: "zsp::verify", error = %e, "audit sink write failed");
        }
    }
}

impl<W: Write + Send + 'static> AuditSink for JsonLinesAudit<W> {
    fn record(&self, event: &AuditEvent<'_>) {
        let now = unix_millis();
        self.write_line(|line| event.write_json_line(line, now));
    }

    fn record_token(&self, event: &AuditEvent<'_>, token: &TokenAudit<'_>) {
        let now = unix_millis();
        // Escaped on the token's first allowed request; a reused token copies them.
        let fields = token.0.audit_json();
        self.write_line(|line| event.write_json_line_with(line, now, Some(fields)));
    }
}

impl<W: Write + Send + 'static> Drop for JsonLinesAudit<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_mul(1000) + u64::from(d.subsec_millis()))
        .unwrap_or(0)
}

impl AuditEvent<'_> {
    /// Appends the event as one JSON object and a newline; absent fields are left out.
    pub(crate) fn write_json_line(&self, out: &mut Vec<u8>, ts_ms: u64) {
        self.write_json_line_with(out, ts_ms, None);
    }

    /// [`write_json_line`](Self::write_json_line), with the token's fields already escaped
    /// ([`Parsed::audit_json`]) when they are the event's.
    pub(crate) fn write_json_line_with(&self, out: &mut Vec<u8>, ts_ms: u64, token: Option<(&[u8], &[u8])>) {
        out.reserve(256);
        out.extend_from_slice(b"{\"ts_ms\":");
        decimal(out, ts_ms);
        // Each key with its quotes and colon is one literal: one copy per field.
        // The decision is one of two fixed words: written whole, nothing to escape.
        out.extend_from_slice(match self.decision {
            AuditDecision::Allow => b",\"decision\":\"allow\"",
            AuditDecision::Deny => b",\"decision\":\"deny\"",
        });
        string_field(out, b",\"reason\":\"", Some(self.reason));
        match token {
            Some((ids, _)) => out.extend_from_slice(ids),
            None => ids_json(out, self.iss, self.sub, self.client_id, self.jti),
        }
        string_field(out, b",\"method\":\"", Some(self.method));
        string_field(out, b",\"route\":\"", self.route);
        match token {
            Some((_, scopes)) => out.extend_from_slice(scopes),
            None => string_field(out, b",\"scopes\":\"", self.scopes),
        }
        out.extend_from_slice(b",\"elapsed_us\":");
        decimal(out, self.elapsed_us);
        out.extend_from_slice(b"}\n");
    }
}

/// The identity fields, in the line's order.
fn ids_json(
    out: &mut Vec<u8>,
    iss: Option<&str>,
    sub: Option<&str>,
    client_id: Option<&str>,
    jti: Option<&str>,
) {
    string_field(out, b",\"iss\":\"", iss);
    string_field(out, b",\"sub\":\"", sub);
    string_field(out, b",\"client_id\":\"", client_id);
    string_field(out, b",\"jti\":\"", jti);
}

/// A verified token's fields ([`Parsed::audit_ids`], as in the events a verifier records for
/// it) as [`AuditEvent::write_json_line`] writes them, and where the scopes start.
pub(crate) fn token_fields_json(p: &Parsed) -> (Box<[u8]>, usize) {
    let ids = p.audit_ids();
    let mut out = Vec::with_capacity(192);
    ids_json(&mut out, ids.iss, ids.sub, ids.client_id, ids.jti);
    let scopes_at = out.len();
    string_field(&mut out, b",\"scopes\":\"", ids.scopes);
    (out.into_boxed_slice(), scopes_at)
}

/// `key` (`,"name":"`), then `value` escaped, then the closing quote; nothing for `None`.
fn string_field(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    let Some(value) = value else { return };
    out.extend_from_slice(key);
    escape_into(out, value);
    out.push(b'"');
}

/// `n` in decimal, two digits per step.
pub(crate) fn decimal(out: &mut Vec<u8>, mut n: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
}

/// Bytes JSON (RFC 8259 §7) needs escaped in a string, plus DEL (terminal safety).
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7f] = true;
    t
};

/// RFC 8259 §7: `"`, `\` and control characters escaped; everything else as it is (UTF-8).
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    // Claims almost never need escaping: one branch-free screen of the whole string, then one
    // copy. Only a string the screen flags is searched, and copied in runs between escapes.
    if !may_need_escape(rest) {
        out.extend_from_slice(rest);
        return;
    }
    while let Some(i) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

const L: u64 = 0x0101_0101_0101_0101;
const H: u64 = 0x8080_8080_8080_8080;

/// The high bit of each lane of `w` (eight bytes, little-endian) that may need escaping.
///
/// The tests work on the bytes with their high bit cleared (so no lane carries into the next):
/// they may flag a UTF-8 byte above 0x80, never miss a byte [`ESCAPE`] marks.
#[inline(always)]
fn flagged(w: u64) -> u64 {
    let lo = w & !H;
    let control = !lo.wrapping_add(L * (0x80 - 0x20)); // lo < 0x20
    let del = lo.wrapping_add(L); // lo = 0x7f
    let quote = !(lo ^ (L * u64::from(b'"'))).wrapping_add(L * 0x7f); // lo = '"'
    let backslash = !(lo ^ (L * u64::from(b'\\'))).wrapping_add(L * 0x7f); // lo = '\\'
    (control | del | quote | backslash) & H
}

/// Whether `b` may hold a byte to escape: false means it holds none. Whole words, OR-ed
/// without a branch; the tail as one more word, overlapping the last full one or padded with
/// spaces, instead of a byte loop.
fn may_need_escape(b: &[u8]) -> bool {
    let (words, tail) = b.as_chunks::<8>();
    let mut acc = words
        .iter()
        .fold(0, |acc, w| acc | flagged(u64::from_le_bytes(*w)));
    if !tail.is_empty() {
        let last = match b.last_chunk::<8>() {
            Some(w) => *w,
            None => {
                let mut w = [b' '; 8];
                w[..tail.len()].copy_from_slice(tail);
                w
            }
        };
        acc |= flagged(u64::from_le_bytes(last));
    }
    acc != 0
}

/// The index of the first byte [`ESCAPE`] marks, eight bytes at a time: a word is searched
/// byte by byte only when [`flagged`] fires for it.
fn first_to_escape(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        if flagged(u64::from_le_bytes(*w)) != 0
            && let Some(j) = w.iter().position(|&c| ESCAPE[usize::from(c)])
        {
            return Some(i + j);
        }
        i += 8;
    }
    let tail = b.get(i..)?;
    tail.iter().position(|&c| ESCAPE[usize::from(c)]).map(|j| i + j)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::AuditDecision;

    /// A denial with `sub` as given and no `client_id` or `scopes`.
    pub(crate) fn event<'a>(sub: Option<&'a str>) -> AuditEvent<'a> {
        AuditEvent {
            decision: AuditDecision::Deny,
            reason: "bad_signature",
            iss: Some("https://i"),
            sub,
            client_id: None,
            jti: Some("j"),
            method: "POST",
            route: Some("/pay"),
            scopes: None,
            elapsed_us: 12,
        }
    }

    #[test]
    fn hostile_claims_stay_inside_their_field_and_line() {
        let nasty = "a\"b\\c\nd\u{1b}[31m\u{7f}é";
        let mut line = Vec::new();
        event(Some(nasty)).write_json_line(&mut line, 1_700_000_000_000);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        assert!(!line.contains(&0x1b));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["sub"], nasty);
        assert_eq!(v["ts_ms"], 1_700_000_000_000u64);
        assert_eq!(v["elapsed_us"], 12);
        assert!(v.get("client_id").is_none() && v.get("scopes").is_none());
        assert_eq!(v["jti"], "j");
    }

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub(crate) std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_buffered_until_flushed_or_dropped() {
        let out = Shared::default();
        let audit = JsonLinesAudit::new(out.clone());
        audit.record(&event(Some("s")));
        audit.record(&event(None));
        assert!(out.0.lock().unwrap().is_empty());
        drop(audit);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2);

        let out = Shared::default();
        let audit = JsonLinesAudit::with_buffer(out.clone(), 0);
        audit.record(&event(Some("s")));
        assert_eq!(out.0.lock().unwrap().iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn decimals() {
        for n in [
            0,
            7,
            9,
            10,
            42,
            99,
            100,
            101,
            999,
            1_000,
            1_700_000_000_000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    proptest::proptest! {
        #[test]
        fn any_decimal(n in proptest::num::u64::ANY) {
            let mut out = Vec::new();
            decimal(&mut out, n);
            proptest::prop_assert_eq!(out, n.to_string().into_bytes());
        }

        /// The word-at-a-time search finds what the table finds, on any bytes.
        #[test]
        fn first_to_escape_agrees_with_the_table(
            b in proptest::collection::vec(
                proptest::prop_oneof![0x20u8..0x7f, proptest::num::u8::ANY],
                0..80,
            ),
        ) {
            let expected = b.iter().position(|&c| ESCAPE[usize::from(c)]);
            proptest::prop_assert_eq!(first_to_escape(&b), expected);
            // The screen may flag a clean string (UTF-8 above 0x80), never pass a dirty one.
            if expected.is_some() {
                proptest::prop_assert!(may_need_escape(&b));
            }
            if b.iter().all(|&c| c < 0x80) {
                proptest::prop_assert_eq!(may_need_escape(&b), expected.is_some());
            }
        }

        /// Whatever the string and whatever the line holds before it, the escaped text is
        /// exactly RFC 8259's, written after what was there.
        #[test]
        fn escape_into_agrees_with_a_char_by_char_escaper(
            prefix in "[ -~]{0,9}",
            s in "[ -~]{0,40}|[ -~\"\\\\\\x00-\\x1f\\x7fé€😀]{0,40}|\\PC{0,40}",
        ) {
            let mut expected = prefix.clone().into_bytes();
            for c in s.chars() {
                match c {
                    '"' => expected.extend_from_slice(b"\\\""),
                    '\\' => expected.extend_from_slice(b"\\\\"),
                    '\n' => expected.extend_from_slice(b"\\n"),
                    '\r' => expected.extend_from_slice(b"\\r"),
                    '\t' => expected.extend_from_slice(b"\\t"),
                    c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                        expected.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
                    }
                    c => expected.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            let mut out = prefix.into_bytes();
            escape_into(&mut out, &s);
            proptest::prop_assert_eq!(out, expected);
        }

        /// Whatever a claim holds, the line parses back to exactly that claim.
        #[test]
        fn any_claim_round_trips(sub in "\\PC*|[\\x00-\\x7f]*") {
            let mut line = Vec::new();
            event(Some(&sub)).write_json_line(&mut line, 1);
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            proptest::prop_assert_eq!(v["sub"].as_str(), Some(sub.as_str()));
            proptest::prop_assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        }
    }
}
