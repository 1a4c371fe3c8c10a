//! axum extractors and per-route requirements.
