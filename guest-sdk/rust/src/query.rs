//! Query strings (`a=1&b=x%20y`): finding one parameter and decoding it as an HTML form does
//! (`%XX` escapes and `+` for a space), for `http::Request::query_param` and
//! `raw::query_param`. Malformed escapes are kept as they are rather than refused: a query
//! string is the client's text, and a guest is better served by a best-effort value.

/// The first value of parameter `name` in `query` (without its `?`), decoded; `Some("")` for a
/// parameter without `=`; `None` when absent. Names are compared after decoding.
pub(crate) fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(n) == name).then(|| decode(v))
        })
}

/// Decodes `%XX` (either case) and `+`; a `%` not followed by two hex digits stays as it is;
/// bytes that do not form UTF-8 become U+FFFD.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: Option<&u8>) -> Option<u8> {
    match *b? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_decodes() {
        let q = "a=1&b=x%20y+z&empty=&flag&a=2&%C3%A9t%C3%A9=summer&pct=100%&bad=%zz%4";
        assert_eq!(param(q, "a").as_deref(), Some("1"));
        assert_eq!(param(q, "b").as_deref(), Some("x y z"));
        assert_eq!(param(q, "empty").as_deref(), Some(""));
        assert_eq!(param(q, "flag").as_deref(), Some(""));
        assert_eq!(param(q, "été").as_deref(), Some("summer"));
        assert_eq!(param(q, "pct").as_deref(), Some("100%"));
        assert_eq!(param(q, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(param(q, "missing"), None);
        assert_eq!(param("", "a"), None);
        assert_eq!(param("&&", ""), None);
        assert_eq!(param("x=a=b", "x").as_deref(), Some("a=b"));
        assert_eq!(decode("%ff%FE"), "\u{fffd}\u{fffd}");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%4"), "%4");
    }
}
