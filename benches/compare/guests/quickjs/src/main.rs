//! Evaluates the JavaScript program read from stdin with QuickJS and prints its result.
//!
//! Built for wasm32-wasip1: a compile-throughput input for the benchmarks, and a large module
//! in the invocation benchmarks (with the program `'Hello World'` on stdin it prints
//! "Hello World\n").

use std::io::Read;

fn main() {
    let mut source = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut source) {
        eprintln!("reading stdin: {e}");
        std::process::exit(2);
    }
    let runtime = rquickjs::Runtime::new().expect("QuickJS runtime");
    let context = rquickjs::Context::full(&runtime).expect("QuickJS context");
    context.with(|ctx| match ctx.eval::<rquickjs::Value<'_>, _>(source) {
        Ok(value) => match value.as_string() {
            Some(s) => println!("{}", s.to_string().unwrap_or_default()),
            None => println!("{value:?}"),
        },
        Err(e) => {
            let detail = ctx.catch();
            eprintln!("error: {e}: {detail:?}");
            std::process::exit(1);
        }
    });
}
