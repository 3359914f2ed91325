//! Reads a JSON array of records from stdin, keeps those whose `email` matches a regex, and
//! prints a summary as JSON.
//!
//! Built for wasm32-wasip1 as a compile-throughput input for the benchmarks (fnvm has no WASI
//! yet, so it is only compiled there, never run).

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::io::Read;

#[derive(Deserialize)]
struct Record {
    name: String,
    email: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Serialize)]
struct Summary<'a> {
    matched: usize,
    total: usize,
    names: Vec<&'a str>,
    tags: std::collections::BTreeMap<&'a str, usize>,
}

fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("reading stdin");
    let records: Vec<Record> = match serde_json::from_str(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bad input: {e}");
            std::process::exit(1);
        }
    };
    let email = Regex::new(r"^[\w.+-]+@(?P<domain>[\w-]+(\.[\w-]+)+)$").expect("regex");
    let mut summary = Summary {
        matched: 0,
        total: records.len(),
        names: Vec::new(),
        tags: Default::default(),
    };
    for r in &records {
        if email.is_match(&r.email) {
            summary.matched += 1;
            summary.names.push(&r.name);
            for t in &r.tags {
                *summary.tags.entry(t).or_default() += 1;
            }
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).expect("serialising")
    );
}
