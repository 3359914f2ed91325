//! Raw mode (the default, no `?trigger`): the request body is stdin, stdout is the response
//! body (status 200 when the guest exits 0), and the request is described by CGI-style
//! environment variables. These helpers read them; an unset variable reads as empty, which is
//! what the worker sets when there is nothing to say (e.g. no query string).

use std::io::Read;

/// The whole request body (stdin).
pub fn body() -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    std::io::stdin().lock().read_to_end(&mut body)?;
    Ok(body)
}

/// Environment variable `name`, or `""` when unset or not UTF-8.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// `REQUEST_METHOD`: `GET`, `POST`, ...
pub fn method() -> String {
    var("REQUEST_METHOD")
}

/// `PATH_INFO`: the path after `/{function_id}`, `""` or starting with `/`.
pub fn path_info() -> String {
    var("PATH_INFO")
}

/// `QUERY_STRING`: the query without fnvm's own `debug` and `trigger` parameters.
pub fn query_string() -> String {
    var("QUERY_STRING")
}

/// The first value of query parameter `name`, decoded (see
/// [`http::Request::query_param`](crate::http::Request::query_param)).
pub fn query_param(name: &str) -> Option<String> {
    crate::query::param(&query_string(), name)
}

/// `CONTENT_TYPE`.
pub fn content_type() -> String {
    var("CONTENT_TYPE")
}

/// `CONTENT_LENGTH`, the body's length in bytes, when set and a number.
pub fn content_length() -> Option<u64> {
    var("CONTENT_LENGTH").parse().ok()
}

/// `X_FULL_URL`: the URL the client asked for.
pub fn full_url() -> String {
    var("X_FULL_URL")
}

/// Request header `name` (any case), from `HTTP_<NAME>` (uppercase, `-` as `_`).
pub fn header(name: &str) -> Option<String> {
    std::env::var(header_var(name)).ok()
}

/// The environment variable that holds header `name`: `User-Agent` → `HTTP_USER_AGENT`.
pub fn header_var(name: &str) -> String {
    let mut var = String::from("HTTP_");
    var.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    var
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_variable_names() {
        assert_eq!(super::header_var("User-Agent"), "HTTP_USER_AGENT");
        assert_eq!(super::header_var("x-request-id"), "HTTP_X_REQUEST_ID");
        assert_eq!(super::header_var("accept"), "HTTP_ACCEPT");
    }
}
