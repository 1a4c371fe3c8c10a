//! The response future of [`super::AttachService`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Resolves to the inner service's response, after at most one retry.
pub struct ResponseFuture<T, E> {
    inner: BoxFuture<Result<T, E>>,
}

impl<T, E> ResponseFuture<T, E> {
    pub(crate) fn new(inner: BoxFuture<Result<T, E>>) -> Self {
        Self { inner }
    }
}

impl<T, E> std::fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
