//! [`VerifyLayer`]: configuration shared by every [`VerifyService`] it builds.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;
use tower_layer::Layer;
use zsp_core::dpop::DpopVerifier;
use zsp_core::{Denial, Verifier};

use super::service::VerifyService;

/// Builds the response for a denial, replacing the default RFC 6750 / RFC 9457 one.
pub type DenialHook = Arc<dyn Fn(&Denial) -> http::Response<Bytes> + Send + Sync>;

/// Finds the connection's peer address in the request extensions.
pub type ClientIpFn = Arc<dyn Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) verifier: Verifier,
    pub(crate) anonymous: bool,
    pub(crate) on_denial: Option<DenialHook>,
    pub(crate) client_ip: ClientIpFn,
    pub(crate) trusted_proxy_header: Option<HeaderName>,
    pub(crate) dpop: Option<DpopVerifier>,
    /// Scheme and authority clients use to reach this service, without a trailing slash.
    pub(crate) public_url: Option<Arc<str>>,
}

/// The default peer-address lookup: a `SocketAddr` or `IpAddr` in the request extensions
/// (hyper-based servers and tests insert one; axum's `ConnectInfo` is read by
/// `zsp_axum::extract::verify_layer`).
fn default_client_ip(ext: &http::Extensions) -> Option<IpAddr> {
    ext.get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| ext.get::<IpAddr>().copied())
}

/// A tower layer that verifies the access token of every request.
///
/// Cheap to clone: the configuration lives behind an `Arc` that every service shares.
/// See the [module docs](super) for what it checks and answers.
#[derive(Clone)]
pub struct VerifyLayer {
    pub(crate) config: Arc<Config>,
}

impl std::fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLayer")
            .field("verifier", &self.config.verifier)
            .field("anonymous", &self.config.anonymous)
            .field("custom_denial", &self.config.on_denial.is_some())
            .field("trusted_proxy_header", &self.config.trusted_proxy_header)
            .field("dpop", &self.config.dpop)
            .field("public_url", &self.config.public_url)
            .finish_non_exhaustive()
    }
}

impl VerifyLayer {
    /// A layer that verifies every request with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            config: Arc::new(Config {
                verifier,
                anonymous: false,
                on_denial: None,
                client_ip: Arc::new(default_client_ip),
                trusted_proxy_header: None,
                dpop: None,
                public_url: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Lets requests that carry **no** credentials through without a `Grant` (for routes
    /// that serve anonymous callers too). Requests with credentials are verified as always,
    /// and bad credentials are still denied; a `Grant` is only ever one this layer verified.
    pub fn allow_anonymous(self, on: bool) -> Self {
        self.edit(|c| c.anonymous = on)
    }

    /// Replaces the denial response. The hook sees the exact [`Denial`]; keep internal detail
    /// out of what it returns (start from [`super::denial_response`] to keep the challenge).
    /// `Cache-Control: no-store` is added when the hook leaves it out.
    pub fn on_denial<F>(self, hook: F) -> Self
    where
        F: Fn(&Denial) -> http::Response<Bytes> + Send + Sync + 'static,
    {
        self.edit(|c| c.on_denial = Some(Arc::new(hook)))
    }

    /// How to find the connection's peer address in the request extensions, for source CIDR
    /// rules. The default reads a `SocketAddr` or `IpAddr` extension. Called only when the
    /// policy has a source rule ([`zsp_core::Policy::uses_source_addresses`]).
    pub fn client_ip_from<F>(self, f: F) -> Self
    where
        F: Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.edit(|c| c.client_ip = Arc::new(f))
    }

    /// Takes the client address from this proxy header (`x-forwarded-for`, `forwarded`, …)
    /// instead of the connection: the right-most entry, the one your own proxy appended.
    /// Only configure this behind a proxy that sets the header, or clients choose their own
    /// address. When the header is absent or unparsable the address is unknown, and routes
    /// with CIDR rules deny.
    pub fn trusted_proxy_header(self, name: HeaderName) -> Self {
        self.edit(|c| c.trusted_proxy_header = Some(name))
    }

    /// Accepts DPoP (RFC 9449) next to Bearer: `Authorization: DPoP <token>` with a `DPoP`
    /// proof header, checked by `dpop` after the token verified and before its single-use
    /// `jti` is recorded. A DPoP-bound token sent as `Bearer` is refused (§7.2), and
    /// [`DpopMode::Required`](zsp_core::dpop::DpopMode::Required) refuses unbound tokens.
    /// Denials carry a `DPoP` challenge with `algs` (and the `Bearer` one unless DPoP is
    /// required); with nonces configured every response carries a fresh `DPoP-Nonce` and a
    /// proof without a current nonce gets 401 `use_dpop_nonce`.
    ///
    /// Without this option the `DPoP` scheme is refused with 400 `invalid_request`, and bound
    /// tokens presented as `Bearer` are still refused.
    ///
    /// Set [`public_url`](Self::public_url) too unless clients reach the service directly.
    pub fn dpop(self, dpop: DpopVerifier) -> Self {
        self.edit(|c| c.dpop = Some(dpop))
    }

    /// The externally visible base URL of this service (`https://api.example.com`, or with a
    /// path prefix a proxy strips), used to rebuild the URI a DPoP proof's `htu` must match:
    /// base + request path. Without it the URI is `http://` + the `Host` header (or the
    /// request URI's authority) + path, which is only right when clients connect directly
    /// over plain HTTP, with no proxy or TLS terminator in between.
    pub fn public_url(self, base: &str) -> Self {
        let base: Arc<str> = Arc::from(base.trim_end_matches('/'));
        self.edit(|c| c.public_url = Some(base))
    }

    /// The DPoP verifier, when DPoP is accepted.
    pub fn dpop_verifier(&self) -> Option<&DpopVerifier> {
        self.config.dpop.as_ref()
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.config.verifier
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService {
            inner,
            config: self.config.clone(),
        }
    }
}
