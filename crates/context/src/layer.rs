//! [`AuditContextLayer`]: a tower layer that builds an [`AuditContext`]
//! from each HTTP request (a function of the request's head: headers, URI,
//! extensions an authentication layer put there) and inserts it into the
//! request's extensions, where handlers find it (axum: `Extension<AuditContext>`).

use std::task::{Context, Poll};

use http::Request;
use http::request::Parts;
use tower_layer::Layer;
use tower_service::Service;

use crate::AuditContext;

/// Builds an [`AuditContext`] per request with `from_request`; a request for
/// which it returns `None` goes on without one.
#[derive(Debug, Clone)]
pub struct AuditContextLayer<F> {
    from_request: F,
}

impl<F> AuditContextLayer<F>
where
    F: Fn(&Parts) -> Option<AuditContext> + Clone,
{
    /// A layer taking the context from each request's head.
    pub fn new(from_request: F) -> Self {
        Self { from_request }
    }
}

impl<S, F: Clone> Layer<S> for AuditContextLayer<F> {
    type Service = AuditContextService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditContextService {
            inner,
            from_request: self.from_request.clone(),
        }
    }
}

/// The service [`AuditContextLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct AuditContextService<S, F> {
    inner: S,
    from_request: F,
}

impl<S, F, B> Service<Request<B>> for AuditContextService<S, F>
where
    S: Service<Request<B>>,
    F: Fn(&Parts) -> Option<AuditContext>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        if let Some(context) = (self.from_request)(&parts) {
            parts.extensions.insert(context);
        }
        self.inner.call(Request::from_parts(parts, body))
    }
}
