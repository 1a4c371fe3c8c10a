//! DPoP on the outbound side, shared by [`super::AttachLayer`] and the reqwest middleware:
//! the key, the latest server nonce per origin, and proof headers.

use http::HeaderValue;
use zsp_core::dpop::{DpopKey, response_nonce};

use super::source::{AccessToken, FetchError};

/// Origins whose nonce is remembered; beyond this the map starts over rather than grow
/// without bound on a client that talks to very many hosts.
const MAX_NONCE_ORIGINS: usize = 1024;

/// The layer's DPoP key and the latest `DPoP-Nonce` per origin (RFC 9449 §8: a nonce is
/// per server, so one origin's nonce is never sent to another).
pub(crate) struct DpopState {
    key: DpopKey,
    nonces: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl DpopState {
    pub(crate) fn new(key: DpopKey) -> Self {
        Self {
            key,
            nonces: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.nonces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn nonce(&self, origin: &str) -> Option<String> {
        self.lock().get(origin).cloned()
    }

    pub(crate) fn remember(&self, origin: &str, headers: &http::HeaderMap) {
        let Some(nonce) = response_nonce(headers) else {
            return;
        };
        let mut map = self.lock();
        if map.get(origin).map(String::as_str) == Some(nonce) {
            return;
        }
        if map.len() >= MAX_NONCE_ORIGINS && !map.contains_key(origin) {
            map.clear();
        }
        map.insert(origin.to_owned(), nonce.to_owned());
    }

    pub(crate) fn key(&self) -> &DpopKey {
        &self.key
    }
}

/// `scheme://authority` of an absolute URI: the scope of a server's nonces.
pub(crate) fn origin(uri: &http::Uri) -> Option<String> {
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// A fresh `DPoP` proof header value for one request carrying `token` (`ath`), marked
/// sensitive.
pub(crate) fn proof_header(
    key: &DpopKey,
    method: &http::Method,
    url: &str,
    token: &AccessToken,
    nonce: Option<&str>,
) -> Result<HeaderValue, FetchError> {
    let proof = key
        .proof(method, url, Some(token.secret()), nonce)
        .map_err(|e| FetchError::Signing(format!("DPoP proof: {e}")))?;
    let mut value = HeaderValue::try_from(proof)
        .map_err(|_| FetchError::Signing("DPoP proof is not header-safe".into()))?;
    value.set_sensitive(true);
    Ok(value)
}
