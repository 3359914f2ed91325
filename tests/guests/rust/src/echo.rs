//! HTTP trigger (`?trigger=http`) with fnvm-guest: echoes the request body byte for byte (binary
//! bodies travel base64-encoded both ways), with `X-Method: <method>` and the status given by
//! the `status` query parameter (default 200). Any number up to 65535 is passed on as is, so
//! that `?status=42` tests the worker's check of the range (502); a `status` that is not a
//! number gets a 400 from the guest itself.
use fnvm_guest::http::{serve, Request, Response};

fn main() {
    serve(|req: Request| {
        let status = match req.query_param("status") {
            None => 200,
            Some(text) => match text.parse::<u16>() {
                Ok(status) => status,
                Err(_) => {
                    return Response::new(400)
                        .header("Content-Type", "text/plain")
                        .body(format!("echo: status {text:?} is not a number\n"))
                }
            },
        };
        Response::new(status)
            .header("X-Method", req.method)
            .body(req.body)
    })
}
