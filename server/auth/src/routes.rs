//! Mounting the protocol's [`Endpoint`]s on axum routers: path and method come from the
//! description, never from a string written again here.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodRouter, delete, get, post, put};
use syncsphere_protocol::endpoint::{Endpoint, Method};

/// An endpoint's method router for a handler (to add layers before mounting it at
/// [`Endpoint::PATH`]).
pub trait Mount: Endpoint {
    fn on<H, T, S>(handler: H) -> MethodRouter<S>
    where
        H: Handler<T, S>,
        T: 'static,
        S: Clone + Send + Sync + 'static,
    {
        match Self::METHOD {
            Method::Get => get(handler),
            Method::Put => put(handler),
            Method::Post => post(handler),
            Method::Delete => delete(handler),
        }
    }
}

impl<E: Endpoint> Mount for E {}

/// `router.endpoint(ListFiles, list)`: the handler at the endpoint's path and method (several
/// endpoints on one path merge).
pub trait RouterExt<S> {
    fn endpoint<E: Endpoint, H, T>(self, endpoint: E, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static;
}

impl<S: Clone + Send + Sync + 'static> RouterExt<S> for Router<S> {
    fn endpoint<E: Endpoint, H, T>(self, _: E, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.route(E::PATH, E::on(handler))
    }
}
