//! The web console, served from the binary (web/ in the repository; nothing fetched at run time).

use axum::response::Html;

const INDEX_HTML: &str = include_str!("../../../../web/index.html");

/// The console's start page: station and train search.
pub async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}
