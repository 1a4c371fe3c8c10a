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
/// Exactly as strict as [`decode`] (the tests compare the two on arbitrary input: alphabet,
/// length, canonical trailing bits), and several times faster on the few hundred characters of
/// a token: base64-simd decodes 32 characters per step with the CPU's vector instructions,
/// chosen at run time.
pub(crate) fn decode_into(text: &[u8], buf: &mut [u8]) -> Option<usize> {
    let n = match text.len() % 4 {
        1 => return None,
        r => text.len() / 4 * 3 + r.saturating_sub(1),
    };
    // base64-simd panics on a short buffer: the length is checked first.
    let out = buf.get_mut(..n)?;
    base64_simd::URL_SAFE_NO_PAD
        .decode(text, base64_simd::Out::from_slice(out))
        .ok()
        .map(|decoded| decoded.len())
}

/// Decodes into a new vector with [`decode_into`].
#[allow(
    clippy::slow_vector_initialization,
    reason = "calloc is the slow one here, see below"
)]
pub(crate) fn decode_vec(text: &[u8]) -> Option<Vec<u8>> {
    // Not `vec![0; n]`: that is calloc, which glibc serves past its per-thread cache, through
    // code the signature check has evicted from the instruction cache by the next request.
    let most = text.len() / 4 * 3 + 2;
    let mut out = Vec::with_capacity(most);
    out.resize(most, 0u8);
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
        fn agrees_with_the_base64_crate(text in "[A-Za-z0-9_=+/ .-]{0,400}") {
            proptest::prop_assert_eq!(decode_vec(text.as_bytes()), reference(text.as_bytes()));
        }

        #[test]
        fn agrees_on_arbitrary_bytes(text in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            proptest::prop_assert_eq!(decode_vec(&text), reference(&text));
        }

        /// One changed character anywhere in a long valid text: every position of every
        /// vector step, and the tail with its canonical bits.
        #[test]
        fn agrees_on_one_changed_character(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..600),
            at in proptest::num::usize::ANY,
            to in proptest::num::u8::ANY,
        ) {
            let mut text = encode(&bytes).into_bytes();
            let at = at % text.len();
            text[at] = to;
            proptest::prop_assert_eq!(decode_vec(&text), reference(&text));
        }

        #[test]
        fn agrees_on_encodings(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let text = encode(&bytes);
            proptest::prop_assert_eq!(decode_vec(text.as_bytes()), Some(bytes));
        }
    }
}
