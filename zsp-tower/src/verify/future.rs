//! The response future of [`super::VerifyService`].

use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pin_project! {
    /// Response future of [`super::VerifyService`].
    ///
    /// Most requests are decided in `call` itself (no store, no key refresh, no DPoP proof to
    /// check): then this is the inner service's own future, or the denial, with nothing
    /// allocated. Only a verification that waits is boxed, together with the inner call.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] fut: F, span: tracing::Span },
        Denied { #[pin] fut: Ready<Result<http::Response<B>, E>> },
        Waiting { fut: BoxFuture<Result<http::Response<B>, E>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    /// The inner service's future, polled inside the request's span.
    pub(crate) fn inner(fut: F, span: tracing::Span) -> Self {
        Self {
            kind: Kind::Inner { fut, span },
        }
    }

    pub(crate) fn denied(resp: http::Response<B>) -> Self {
        Self {
            kind: Kind::Denied {
                fut: std::future::ready(Ok(resp)),
            },
        }
    }

    pub(crate) fn waiting(fut: BoxFuture<Result<http::Response<B>, E>>) -> Self {
        Self {
            kind: Kind::Waiting { fut },
        }
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Denied { .. } => "denied",
            Kind::Waiting { .. } => "waiting",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut, span } => {
                let _entered = span.enter();
                fut.poll(cx)
            }
            KindProj::Denied { fut } => fut.poll(cx),
            KindProj::Waiting { fut } => fut.as_mut().poll(cx),
        }
    }
}
