//! The token broker as an axum Router.
