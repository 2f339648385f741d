//! `chepiao bench hello`: an axum JSON hello-world, built with the same settings as the server
//! (same binary, same allocator, a multi-threaded tokio runtime as `serve` has), the baseline
//! `bench/compare.sh` divides every figure by: this box's speed swings by half within minutes,
//! so a figure means something only next to a baseline measured in the same run.

use axum::Json;
use axum::routing::get;

/// Serve `GET /` → `{"message":"hello, world"}` on `listen` until killed.
pub fn hello(listen: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let app =
            axum::Router::new().route("/", get(|| async { Json(serde_json::json!({"message": "hello, world"})) }));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("hello-world on http://{}/", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}
