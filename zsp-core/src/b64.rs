//! base64url (RFC 4648 §5, no padding) as JOSE uses it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; padding, whitespace and the standard alphabet are rejected.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// Decodes into `buf`, returning the written length; `None` for invalid text or a `buf` too
/// small. For the hot path (header, payload, signature of every token): no allocation.
///
/// Exactly as strict as [`decode`] (the tests compare the two on arbitrary input), and about
/// twice as fast: four tables map a character straight to its bits at its place in a 24-bit
/// group, so a group is four lookups and three ORs; an invalid character sets bit 24, tested
/// once at the end.
pub(crate) fn decode_into(text: &[u8], buf: &mut [u8]) -> Option<usize> {
    let n = match text.len() % 4 {
        1 => return None,
        r => text.len() / 4 * 3 + r.saturating_sub(1),
    };
    let out = buf.get_mut(..n)?;
    let [t0, t1, t2, t3] = &TABLES;
    let mut bad = 0u32;
    let mut groups = text.chunks_exact(4);
    let mut outs = out.chunks_exact_mut(3);
    for (g, o) in (&mut groups).zip(&mut outs) {
        let w = t0[usize::from(g[0])] | t1[usize::from(g[1])] | t2[usize::from(g[2])] | t3[usize::from(g[3])];
        bad |= w;
        o.copy_from_slice(&w.to_be_bytes()[1..]);
    }
    let tail = outs.into_remainder();
    match *groups.remainder() {
        [] => {}
        [a, b] => {
            let w = t0[usize::from(a)] | t1[usize::from(b)];
            // The bits past the last whole byte must be zero (canonical encoding).
            bad |= w | (u32::from(w & 0xffff != 0) << 24);
            tail.copy_from_slice(&w.to_be_bytes()[1..2]);
        }
        [a, b, c] => {
            let w = t0[usize::from(a)] | t1[usize::from(b)] | t2[usize::from(c)];
            bad |= w | (u32::from(w & 0xff != 0) << 24);
            tail.copy_from_slice(&w.to_be_bytes()[1..3]);
        }
        _ => return None,
    }
    (bad >> 24 == 0).then_some(n)
}

/// For each position in a group of four, each byte's bits in place, or bit 24 if the byte is
/// not in the alphabet.
const TABLES: [[u32; 256]; 4] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut t = [[1u32 << 24; 256]; 4];
    let mut i = 0;
    while i < 64 {
        let c = alphabet[i] as usize;
        let v = i as u32;
        t[0][c] = v << 18;
        t[1][c] = v << 12;
        t[2][c] = v << 6;
        t[3][c] = v;
        i += 1;
    }
    t
};

/// Decodes into a new vector with [`decode_into`].
pub(crate) fn decode_vec(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; text.len() / 4 * 3 + 2];
    let n = decode_into(text, &mut out)?;
    out.truncate(n);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &[u8]) -> Option<Vec<u8>> {
        decode(text).ok()
    }

    #[test]
    fn round_trips_and_refusals() {
        for len in 0..64usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode_vec(encode(&bytes).as_bytes()).unwrap(), bytes);
        }
        for bad in [
            "a",
            "ab=",
            "a+b/",
            "ab c",
            "QQ==",
            "QR",
            "QUF",
            "AAAAAAAAQR",
            "\u{e9}AAA",
        ] {
            assert_eq!(decode_vec(bad.as_bytes()), None, "{bad:?}");
            assert_eq!(reference(bad.as_bytes()), None, "{bad:?}");
        }
        let mut small = [0u8; 2];
        assert_eq!(decode_into(b"QUJD", &mut small), None, "buffer too small");
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_base64_crate(text in "[A-Za-z0-9_=+/ .-]{0,40}") {
            proptest::prop_assert_eq!(decode_vec(text.as_bytes()), reference(text.as_bytes()));
        }

        #[test]
        fn agrees_on_arbitrary_bytes(text in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            proptest::prop_assert_eq!(decode_vec(&text), reference(&text));
        }

        #[test]
        fn agrees_on_encodings(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let text = encode(&bytes);
            proptest::prop_assert_eq!(decode_vec(text.as_bytes()), Some(bytes));
        }
    }
}
