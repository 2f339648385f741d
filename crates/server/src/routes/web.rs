//! The web console (`web/` in the repository: Vue 3 + TypeScript), served from the binary: its
//! committed build (`web/dist`) is embedded by `build.rs`, so nothing is read from disk or
//! fetched at run time. Pages are addressed after `#`, so the server serves `/` and the hashed
//! files under `/assets/` only.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/console.rs"));

fn file(name: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The console's start page. Not cached: it names the current build's assets.
pub async fn index() -> Response {
    let html = file("index.html").expect("build.rs checked index.html is there");
    let mut r = html.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// One of the build's assets; their names carry a hash of their content, so they are cached
/// for a year.
pub async fn asset(Path(name): Path<String>) -> Response {
    let name = format!("assets/{name}");
    let Some(bytes) = file(&name) else {
        return ApiError::not_found(format!("no console file {name:?}")).into_response();
    };
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&name)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    r
}
