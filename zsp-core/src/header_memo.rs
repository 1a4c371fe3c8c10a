//! The last JWS header that verified, so the next token with the same header bytes skips the
//! header's decoding and checks.
//!
//! An issuer writes the same header (`alg`, `kid`, `typ`) on every token it signs with one key,
//! so the base64url text of the header repeats byte for byte. The memo holds that text and the
//! key it resolved to, for one verifier (the header checks depend on its policy):
//! * it is written only after a token with that header fully verified, so a forger cannot
//!   place anything in it;
//! * equal bytes decode to an equal header, which the same policy judges the same way, so only
//!   the key lookup is repeated: the memo counts only while the current key set still resolves
//!   the header's `kid` to the very key object it remembers (rotation invalidates it);
//! * readers never lock (an atomic pointer load).

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::keys::{KeySet, VerifyingKey};

struct Memo {
    h64: Box<[u8]>,
    key: VerifyingKey,
    /// Whether the header named its key (`kid`); without one, it was the set's only key.
    named: bool,
}

#[derive(Default)]
pub(crate) struct HeaderMemo(ArcSwapOption<Memo>);

impl HeaderMemo {
    /// The key for the header `h64` in `set`, if `h64` is the remembered header and `set`
    /// still resolves it to the same key; and whether the header named it.
    pub(crate) fn get<'k>(&self, h64: &[u8], set: Option<&'k KeySet>) -> Option<(&'k VerifyingKey, bool)> {
        let guard = self.0.load();
        let m = guard.as_ref().filter(|m| *m.h64 == *h64)?;
        let kid = if m.named { m.key.kid() } else { None };
        let key = set?.get(kid)?;
        key.same_key(&m.key).then_some((key, m.named))
    }

    /// Remembers `h64` as the header of a token that verified with `key`.
    pub(crate) fn remember(&self, h64: &[u8], key: &VerifyingKey, named: bool) {
        let current = self.0.load();
        if current
            .as_ref()
            .is_some_and(|m| *m.h64 == *h64 && m.key.same_key(key))
        {
            return;
        }
        self.0.store(Some(Arc::new(Memo {
            h64: h64.into(),
            key: key.clone(),
            named,
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    #[test]
    fn hits_only_the_same_bytes_and_the_same_key() {
        let k = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let set = KeySet::from_keys([k.clone()]);
        let memo = HeaderMemo::default();
        assert!(memo.get(b"hdr", Some(&set)).is_none());
        memo.remember(b"hdr", &k, true);
        assert!(
            memo.get(b"hdr", Some(&set))
                .is_some_and(|(key, named)| key.same_key(&k) && named)
        );
        assert!(memo.get(b"hdx", Some(&set)).is_none());
        let rotated = KeySet::from_keys([VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap()]);
        assert!(
            memo.get(b"hdr", Some(&rotated)).is_none(),
            "a replaced key never hits"
        );
        assert!(memo.get(b"hdr", None).is_none());
    }
}
