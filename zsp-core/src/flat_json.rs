//! A strict scanner for the common shape of a JWS header or JWT payload: one flat JSON object
//! whose values are plain strings, unsigned integers, `true`, `false` or `null`.
//!
//! It exists for speed: serde_json spends most of a token's parse on per-string machinery, and
//! the claims are parsed on every request. It is not a second JSON parser: it only ever
//! *accepts* a subset of what serde_json accepts, and gives up ([`None`]) on anything else —
//! an escape, a non-ASCII or control byte (tabs and line breaks included), a nested object or
//! array, a number that is not a plain unsigned integer, a duplicate of a field the caller
//! knows. The caller then parses the same bytes with serde_json, which decides (usually with
//! an error). On the subset, the callers build exactly the value serde_json would have built:
//! the differential tests in `claims_view` and `verify` check that on arbitrary inputs.
//!
//! Two passes, eight bytes at a time: first every byte of the input is checked to be printable
//! ASCII other than `\` (so no string can hold an escape or a byte that needs validating),
//! then strings are found by their closing quote alone. A byte-by-byte walk with a class
//! table per string byte cost about three times as many instructions and a branch
//! misprediction at the end of every string.

/// A value of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// A string of printable ASCII without escapes: the bytes are the text.
    Str(&'a str),
    /// A non-negative integer without sign, fraction, exponent or leading zero.
    UInt(u64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

struct Cursor<'a> {
    /// The input, known to be UTF-8, so string slices need no second validation.
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Bytes that may stand unescaped in a string of the subset: printable ASCII but `"` and `\`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x20;
    while c < 0x7f {
        t[c] = c != b'"' as usize && c != b'\\' as usize;
        c += 1;
    }
    t
};

const L: u64 = 0x0101_0101_0101_0101;
const H: u64 = 0x8080_8080_8080_8080;

/// Whether every byte of `b` is printable ASCII (0x20–0x7e) other than `\\`.
///
/// Word by word: each test works on the bytes with their high bit cleared, so no lane can
/// carry into the next, and bytes with the high bit set are flagged on their own.
fn all_plain(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    let mut bad = 0u64;
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        let lo = x & !H;
        let control = !lo.wrapping_add(L * (0x80 - 0x20)); // high bit where lo < 0x20
        let del = lo.wrapping_add(L); // high bit where lo = 0x7f
        let backslash = !(lo ^ (L * u64::from(b'\\'))).wrapping_add(L * 0x7f); // where lo = '\\'
        bad |= x | control | del | backslash;
    }
    bad & H == 0
        && words
            .remainder()
            .iter()
            .all(|&c| PLAIN[usize::from(c)] || c == b'"')
}

/// The index of the first `"` at or after `from`, in input that passed [`all_plain`] (every
/// byte below 0x80, which the word test relies on).
fn quote_at(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(w) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let q = u64::from_le_bytes(*w) ^ (L * u64::from(b'"'));
        let hit = !q.wrapping_add(L * 0x7f) & H; // high bit where the byte is '"'
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| c == b'"').map(|p| i + p)
}

impl<'a> Cursor<'a> {
    /// JSON whitespace; of its four bytes only the space gets past [`all_plain`], which
    /// refuses control bytes (tab and line breaks included).
    fn ws(&mut self) {
        while self.b.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// After the opening quote: up to the closing quote. Every byte is already known to be
    /// printable ASCII other than `\\` ([`all_plain`]), so the closing quote is the first quote.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i;
        let end = quote_at(self.b, start)?;
        self.i = end + 1;
        self.s.get(start..end)
    }

    fn uint(&mut self) -> Option<u64> {
        let rest = self.b.get(self.i..)?;
        let len = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        // A leading zero is only "0" itself; a fraction or exponent is not an integer.
        if len == 0 || (rest[0] == b'0' && len > 1) || matches!(rest.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let digits = rest.get(..len)?;
        let n = if len <= 19 {
            // 19 digits cannot overflow: u64::MAX has 20.
            digits.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
        } else {
            let mut n: u64 = 0;
            for &d in digits {
                n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            }
            n
        };
        self.i += len;
        Some(n)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                self.string().map(Value::Str)
            }
            b'0'..=b'9' => self.uint().map(Value::UInt),
            b't' => self.literal(b"true").map(|_| Value::Bool(true)),
            b'f' => self.literal(b"false").map(|_| Value::Bool(false)),
            b'n' => self.literal(b"null").map(|_| Value::Null),
            _ => None,
        }
    }
}

/// Calls `member` for each member of the flat object in `input`, in order. `None` when the
/// input is outside the subset or `member` gives up.
pub(crate) fn scan<'a>(s: &'a str, mut member: impl FnMut(&'a str, Value<'a>) -> Option<()>) -> Option<()> {
    let input = s.as_bytes();
    if !all_plain(input) {
        return None;
    }
    let mut c = Cursor { s, b: input, i: 0 };
    c.ws();
    c.eat(b'{')?;
    c.ws();
    if c.eat(b'}').is_none() {
        loop {
            c.eat(b'"')?;
            let key = c.string()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            let value = c.value()?;
            member(key, value)?;
            c.ws();
            if c.eat(b',').is_some() {
                c.ws();
                continue;
            }
            c.eat(b'}')?;
            break;
        }
    }
    c.ws();
    (c.i == input.len()).then_some(())
}

/// Sets `slot` once; a second occurrence of a known field gives up (serde_json refuses it).
pub(crate) fn once<T>(seen: &mut u32, bit: u32, slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    *slot = value;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &str) -> Option<Vec<(String, Value<'_>)>> {
        let mut out = Vec::new();
        scan(s, |k, v| {
            out.push((k.to_owned(), v));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn accepts_the_flat_subset() {
        let m = members(
            " {\"a\" : \"x y\",\"b\":0,\"c\":18446744073709551615,\"d\":true,\"e\":false,\"f\":null} ",
        )
        .unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].1, Value::Str("x y"));
        assert_eq!(m[1].1, Value::UInt(0));
        assert_eq!(m[2].1, Value::UInt(u64::MAX));
        // Either side of the 19 digits that are parsed without overflow checks.
        let n = |s: &'static str| members(s).map(|m| m[0].1);
        assert_eq!(
            n("{\"a\":9999999999999999999}"),
            Some(Value::UInt(9_999_999_999_999_999_999))
        );
        assert_eq!(
            n("{\"a\":10000000000000000000}"),
            Some(Value::UInt(10_000_000_000_000_000_000))
        );
        assert_eq!(n("{\"a\":99999999999999999999}"), None);
        assert_eq!(m[5].1, Value::Null);
        assert_eq!(members("{}").unwrap().len(), 0);
    }

    #[test]
    fn gives_up_outside_it() {
        for s in [
            "",
            "[]",
            "{",
            "{\"a\":1,}",
            "{\"a\":1}x",
            "{\"a\":01}",
            "{\"a\":-1}",
            "{\"a\":1.0}",
            "{\"a\":1e3}",
            "{\"a\":18446744073709551616}",
            "{\"a\":\"\\u0041\"}",
            "{\"a\":\"é\"}",
            "{\"a\":\"\t\"}",
            "{\"a\":[]}",
            "{\"a\":{}}",
            "{\"a\":tru}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":nul}",
            "{\"a\":\"x}",
            "{\"a\":1}\n",
            "{\n\"a\":1}",
            "{\"a\":\"\u{7f}\"}",
            "{\"a\":\"x\\\\\"}",
        ] {
            assert!(members(s).is_none(), "{s:?}");
        }
    }

    proptest::proptest! {
        /// The word-at-a-time tests agree with byte-at-a-time ones, on any bytes.
        #[test]
        fn word_tests_agree_with_byte_tests(
            b in proptest::collection::vec(
                proptest::prop_oneof![0x20u8..0x7f, proptest::num::u8::ANY],
                0..80,
            ),
            from in 0usize..90,
        ) {
            let plain = b.iter().all(|&c| (0x20..0x7f).contains(&c) && c != b'\\');
            proptest::prop_assert_eq!(all_plain(&b), plain);
            if plain {
                let expected = b.get(from..).and_then(|r| r.iter().position(|&c| c == b'"')).map(|p| from + p);
                proptest::prop_assert_eq!(quote_at(&b, from), expected);
            }
        }

        /// Whatever the scanner accepts, serde_json accepts with the same members.
        #[test]
        fn agrees_with_serde_json(s in "[{}\\[\\]\":, \t\n0-9a-z.eE+\\-\\\\]{0,40}") {
            if let Some(m) = members(&s) {
                let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&s)
                    .expect("serde_json accepts what the scanner accepts");
                // serde_json's map keeps the last of duplicate keys; compare those.
                for (k, val) in &m {
                    let last = m.iter().rev().find(|(k2, _)| k2 == k).map(|(_, v)| *v);
                    if last != Some(*val) { continue; }
                    let expected = match val {
                        Value::Str(s) => serde_json::Value::from(*s),
                        Value::UInt(n) => serde_json::Value::from(*n),
                        Value::Bool(b) => serde_json::Value::from(*b),
                        Value::Null => serde_json::Value::Null,
                    };
                    proptest::prop_assert_eq!(v.get(k), Some(&expected));
                }
            }
        }
    }
}
