//! HTTP trigger (`?trigger=http`), the product description's example with fnvm-guest: answers
//! 200 with `Content-Type: text/plain`, `X-Powered-By: CleverCloud` and the body
//! `User-Agent: <the request's User-Agent>` (empty when it has none).
use fnvm_guest::http::{serve, Request, Response};

fn main() {
    serve(|req: Request| {
        Response::new(200)
            .header("Content-Type", "text/plain")
            .header("X-Powered-By", "CleverCloud")
            .body(format!(
                "User-Agent: {}",
                req.header("user-agent").unwrap_or("")
            ))
    })
}
