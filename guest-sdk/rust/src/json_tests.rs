//! Tests of the JSON reader and writer (`json.rs`): the grammar, escapes, nesting, errors on bad
//! input, and random strings round-tripping through the writer and the reader.

use super::*;
use crate::test_rng::Rng;

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

fn n(text: &str) -> Value {
    Value::Number(text.to_string())
}

#[test]
fn scalars() {
    assert_eq!(parse("null"), Ok(Value::Null));
    assert_eq!(parse("true"), Ok(Value::Bool(true)));
    assert_eq!(parse("false"), Ok(Value::Bool(false)));
    assert_eq!(parse("\"\""), Ok(s("")));
    assert_eq!(parse("\"héllo ✓ 😀\""), Ok(s("héllo ✓ 😀")));
    for num in [
        "0",
        "-0",
        "200",
        "-12",
        "1.5",
        "0.25",
        "1e3",
        "1E+3",
        "-2.5e-10",
        "123456789012345678901234567890",
    ] {
        assert_eq!(parse(num), Ok(n(num)), "{num}");
    }
}

#[test]
fn escapes() {
    let cases = [
        (r#""a\nb""#, "a\nb"),
        (r#""say \"hi\"""#, "say \"hi\""),
        (r#""back\\slash""#, "back\\slash"),
        (r#""\/\b\f\r\t""#, "/\u{8}\u{c}\r\t"),
        (r#""\u0041\u00e9\u20AC""#, "Aé€"),
        (r#""\u0000""#, "\0"),
        // A surrogate pair is one character beyond the BMP.
        (r#""\ud83d\ude00""#, "😀"),
        (r#""\uD834\uDD1E clef""#, "𝄞 clef"),
        (r#""x\uDBFF\uDFFFy""#, "x\u{10FFFF}y"),
    ];
    for (json, text) in cases {
        assert_eq!(parse(json), Ok(s(text)), "{json}");
    }
}

#[test]
fn nested_objects_and_whitespace() {
    let text = " \t\r\n{ \"method\" : \"GET\" ,\n \"headers\":{\"a\":\"1\",\"b\":{\"c\":[1, [], {}, [true,null]]}},\
                \"empty\":{}, \"list\" : [ ] } \n";
    let expected = Value::Object(vec![
        ("method".into(), s("GET")),
        (
            "headers".into(),
            Value::Object(vec![
                ("a".into(), s("1")),
                (
                    "b".into(),
                    Value::Object(vec![(
                        "c".into(),
                        Value::Array(vec![
                            n("1"),
                            Value::Array(vec![]),
                            Value::Object(vec![]),
                            Value::Array(vec![Value::Bool(true), Value::Null]),
                        ]),
                    )]),
                ),
            ]),
        ),
        ("empty".into(), Value::Object(vec![])),
        ("list".into(), Value::Array(vec![])),
    ]);
    assert_eq!(parse(text), Ok(expected.clone()));
    // The writer's compact form reads back the same.
    let mut out = String::new();
    write(&mut out, &expected);
    assert_eq!(parse(&out), Ok(expected));
}

#[test]
fn duplicates_are_kept_in_order() {
    assert_eq!(
        parse(r#"{"a":1,"a":2}"#),
        Ok(Value::Object(vec![
            ("a".into(), n("1")),
            ("a".into(), n("2"))
        ]))
    );
}

#[test]
fn bad_input_is_an_error() {
    let bad = [
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "[1,]",
        "[1 2]",
        "{a:1}",
        "{'a':1}",
        "{\"a\":1}}",
        "{\"a\":1} x",
        "{} {}",
        "tru",
        "nul",
        "True",
        "NaN",
        "Infinity",
        "-",
        "01",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "0x10",
        "\"abc",
        "\"\\\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\ud83d\"",
        "\"\\ud83d x\"",
        "\"\\ud83d\\u0041\"",
        "\"\\ude00\"",
        "\"\\ude00\\ud83d\"",
        "\"tab\there\"",
        "\"new\nline\"",
        "\"\u{1}\"",
        "\u{feff}{}",
        "[\"a\" \"b\"]",
        "{\"a\" 1}",
        "{,}",
        "[,]",
        "{\"a\":1,,\"b\":2}",
        "\"\\\\\\\"",
    ];
    for text in bad {
        assert!(parse(text).is_err(), "{text:?} parsed as {:?}", parse(text));
    }
    assert_eq!(
        parse("{\"a\": tru}"),
        Err(Error {
            offset: 6,
            message: "invalid literal"
        })
    );
    assert_eq!(parse("[1,]").unwrap_err().offset, 3);
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(parse(&ok).is_ok());
    let too_deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert_eq!(parse(&too_deep).unwrap_err().message, "nesting too deep");
    let objects = "{\"a\":".repeat(MAX_DEPTH + 1);
    assert_eq!(parse(&objects).unwrap_err().message, "nesting too deep");
    // Far deeper than any stack would take, had the depth not been bounded.
    let huge = "[".repeat(1_000_000);
    assert!(parse(&huge).is_err());
}

#[test]
fn writer_escapes() {
    let mut out = String::new();
    write_string(
        &mut out,
        "a\"b\\c\nd\re\tf\u{8}\u{c}\u{0}\u{1f}\u{7f}é😀</script>",
    );
    assert_eq!(
        out,
        "\"a\\\"b\\\\c\\nd\\re\\tf\\b\\f\\u0000\\u001f\u{7f}é😀</script>\""
    );
}

/// A random string mixing the characters that matter to JSON: quotes, backslashes, every
/// control character, ASCII, two- to four-byte UTF-8, the edges of the surrogate range.
fn random_string(rng: &mut Rng) -> String {
    const SPECIAL: &[char] = &[
        '"',
        '\\',
        '/',
        '\u{0}',
        '\u{8}',
        '\u{c}',
        '\n',
        '\r',
        '\t',
        '\u{1f}',
        '\u{7f}',
        'u',
        '\u{80}',
        'é',
        '\u{7ff}',
        '\u{800}',
        '€',
        '\u{d7ff}',
        '\u{e000}',
        '\u{fffd}',
        '\u{ffff}',
        '\u{10000}',
        '😀',
        '\u{10ffff}',
    ];
    let len = rng.below(40);
    (0..len)
        .map(|_| match rng.below(4) {
            0 => SPECIAL[rng.below(SPECIAL.len())],
            1 => char::from(0x20 + rng.below(0x5f) as u8),
            2 => char::from(rng.below(0x20) as u8),
            _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
        })
        .collect()
}

#[test]
fn random_strings_round_trip() {
    let mut rng = Rng::new(1);
    for _ in 0..20_000 {
        let text = random_string(&mut rng);
        let mut json = String::new();
        write_string(&mut json, &text);
        assert!(
            !json[1..json.len() - 1].bytes().any(|b| b < 0x20),
            "a raw control character in {json:?}"
        );
        assert_eq!(parse(&json), Ok(Value::String(text.clone())), "{json:?}");
        // Inside an object too, as a name and as a value.
        let mut object = String::from("{");
        write_string(&mut object, &text);
        object.push(':');
        write_string(&mut object, &text);
        object.push('}');
        assert_eq!(
            parse(&object),
            Ok(Value::Object(vec![(text.clone(), Value::String(text))]))
        );
    }
}

#[test]
fn random_escaped_strings_decode_like_the_writer_encodes() {
    // The reader must also accept what other writers produce: every character escaped as
    // \uXXXX (surrogate pairs beyond the BMP), in upper or lower case.
    let mut rng = Rng::new(2);
    for _ in 0..5_000 {
        let text = random_string(&mut rng);
        let mut json = String::from("\"");
        for unit in text.encode_utf16() {
            if rng.below(2) == 0 {
                json.push_str(&format!("\\u{unit:04x}"));
            } else {
                json.push_str(&format!("\\u{unit:04X}"));
            }
        }
        json.push('"');
        assert_eq!(parse(&json), Ok(Value::String(text)), "{json}");
    }
}

#[test]
fn random_mutations_never_panic() {
    let base = r#"{"method":"POST","uri":"/a?b=1","path":"/a","query":"b=1","headers":{"user-agent":"x \"y\" \u00e9","accept":"*/*"},"body":"aGk=","bodyEncoding":"base64","extra":[1,-2.5e3,true,null,{}]}"#;
    assert!(parse(base).is_ok());
    let alphabet = b"{}[]:,\"\\u0aZ-+.eE \n\xc3\xa9tfn";
    let mut rng = Rng::new(3);
    for _ in 0..50_000 {
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(3) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = alphabet[rng.below(alphabet.len())],
                _ => bytes.insert(at, alphabet[rng.below(alphabet.len())]),
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            // Whatever it says, it must say it without panicking; what parses must re-parse
            // identically from the writer's output.
            if let Ok(value) = parse(text) {
                let mut out = String::new();
                write(&mut out, &value);
                assert_eq!(parse(&out), Ok(value));
            }
        }
    }
    // Every prefix of the valid request is an error, never a panic.
    for end in 0..base.len() {
        if base.is_char_boundary(end) {
            assert!(parse(&base[..end]).is_err(), "prefix {end} parsed");
        }
    }
}
