//! fnvm's JavaScript engine: QuickJS (rquickjs) as a WASI command module for fnvm's JavaScript
//! functions.
//!
//! - `fnvm_preinit` (export): reads the user's script from stdin, creates the runtime and the
//!   context, installs the API (src/prelude.js: `console`, `TextEncoder`/`TextDecoder`,
//!   `atob`/`btoa`, `process.env`, `net.WasiTcpConn`), evaluates the script as a global script
//!   and requires it to define `trigger_http(request)` and/or `main(input)`, and not to have
//!   tried to connect (there is no network at build time). fnvm-preinit runs it once and
//!   snapshots the memory, so every invocation starts with the script evaluated. It reads
//!   neither the environment (wasi-libc caches it on first use) nor the clocks; `Math.random` is
//!   reseeded per invocation.
//! - `_start` (`main`): one invocation from the snapshot: `FNVM_TRIGGER=http` runs the HTTP
//!   trigger ABI (request JSON on stdin, response JSON on stdout), otherwise the raw mode
//!   (`main(input)` with stdin as a string, or `trigger_http` with a request built from the CGI
//!   variables, its body on stdout). An uncaught exception or a rejected Promise prints its
//!   message and stack on stderr and exits with status 1.
//!
//! Without a snapshot (the engine as built), `_start` evaluates the script in `FNVM_JS_SCRIPT`
//! first: the per-invocation evaluation the benchmarks compare against.

mod natives;

use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Object, Persistent, Runtime, TypedArray,
    Value,
};
use std::cell::RefCell;
use std::io::Read;

/// The API, evaluated before the user's script.
const PRELUDE: &str = include_str!("prelude.js");
/// The name the user's script has in stack traces.
const SCRIPT_NAME: &str = "function.js";

/// The engine between pre-initialisation and the invocations (in the snapshot).
struct Engine {
    // Field order: the API object goes before the context and runtime it lives in.
    api: Persistent<Object<'static>>,
    ctx: Context,
    _rt: Runtime,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// Prints `msg` on stderr and exits with status 1.
fn fail(msg: &str) -> ! {
    natives::write(2, msg.as_bytes());
    if !msg.ends_with('\n') {
        natives::write(2, b"\n");
    }
    natives::flush();
    std::process::exit(1)
}

fn read_stdin() -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut buf) {
        fail(&format!("fnvm-js: reading stdin: {e}"));
    }
    buf
}

/// The text of a caught error: the API's formatting of a thrown value (message and stack).
fn describe<'js>(ctx: &Ctx<'js>, api: Option<&Object<'js>>, e: CaughtError<'js>) -> String {
    let thrown = match e {
        CaughtError::Exception(ex) => ex.into_value(),
        CaughtError::Value(v) => v,
        CaughtError::Error(e) => return format!("fnvm-js: {e}"),
    };
    let formatted = api
        .and_then(|a| a.get::<_, Function<'js>>("formatError").ok())
        .and_then(|f| f.call::<_, String>((thrown.clone(),)).ok());
    formatted.unwrap_or_else(|| {
        let s = ctx
            .globals()
            .get::<_, Function<'js>>("String")
            .and_then(|f| f.call::<_, String>((thrown,)))
            .unwrap_or_else(|_| "an exception".into());
        format!("Uncaught {s}\n")
    })
}

/// Creates the runtime and context, installs the API and evaluates `script`.
fn init(script: &str) -> Result<Engine, String> {
    let rt = Runtime::new().map_err(|e| format!("fnvm-js: creating the runtime: {e}"))?;
    // No stack limit of QuickJS's own: quickjs-ng disables it on WASI (its frames live mostly
    // in the engine's native stack, which the shadow stack pointer does not see). Deep
    // recursion ends with the runtime's stack-overflow trap instead of a RangeError.
    let ctx = Context::full(&rt).map_err(|e| format!("fnvm-js: creating the context: {e}"))?;
    let api = ctx.with(|ctx| -> Result<_, String> {
        let natives = natives::install(&ctx).map_err(|e| format!("fnvm-js: natives: {e}"))?;
        let mut opts = rquickjs::context::EvalOptions::default();
        opts.filename = Some("fnvm:prelude".into());
        let factory: Function<'_> = ctx
            .eval_with_options(PRELUDE, opts)
            .catch(&ctx)
            .map_err(|e| describe(&ctx, None, e))?;
        let api: Object<'_> = factory
            .call((natives,))
            .catch(&ctx)
            .map_err(|e| describe(&ctx, None, e))?;
        let mut opts = rquickjs::context::EvalOptions::default();
        opts.filename = Some(SCRIPT_NAME.into());
        opts.strict = false;
        opts.global = true;
        ctx.eval_with_options::<(), _>(script, opts)
            .catch(&ctx)
            .map_err(|e| describe(&ctx, Some(&api), e))?;
        // Promises the script started settle now (their effects are part of the snapshot).
        while ctx.execute_pending_job() {}
        if ctx.has_exception() {
            let e = ctx.catch();
            return Err(describe(&ctx, Some(&api), CaughtError::Value(e)));
        }
        let check: Function<'_> = api.get("check").map_err(|e| format!("fnvm-js: {e}"))?;
        let problem: Option<String> = check.call(()).map_err(|e| format!("fnvm-js: {e}"))?;
        if let Some(p) = problem {
            return Err(format!("fnvm-js: {p}\n"));
        }
        Ok(Persistent::save(&ctx, api))
    })?;
    Ok(Engine { api, ctx, _rt: rt })
}

/// Pre-initialisation: the script on stdin is evaluated; fnvm snapshots the result.
#[export_name = "fnvm_preinit"]
pub extern "C" fn fnvm_preinit() {
    let script = read_stdin();
    let Ok(script) = String::from_utf8(script) else {
        fail("fnvm-js: the script is not valid UTF-8");
    };
    match init(&script) {
        Ok(engine) => ENGINE.with(|e| *e.borrow_mut() = Some(engine)),
        Err(msg) => fail(&msg),
    }
    natives::flush();
}

/// One invocation: what goes to stdout, or the error to print (exit status 1).
fn invoke(engine: &Engine, trigger: &str, input: &[u8]) -> Result<(), String> {
    engine.ctx.with(|ctx| -> Result<(), String> {
        let api = engine
            .api
            .clone()
            .restore(&ctx)
            .map_err(|e| format!("fnvm-js: {e}"))?;
        let run: Function<'_> = api.get("run").map_err(|e| format!("fnvm-js: {e}"))?;
        let env = Object::new(ctx.clone()).map_err(|e| format!("fnvm-js: {e}"))?;
        for (k, v) in std::env::vars_os() {
            let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
            env.set(k.as_ref(), v.as_ref())
                .map_err(|e| format!("fnvm-js: {e}"))?;
        }
        let input = String::from_utf8_lossy(input);
        let result: Value<'_> = run
            .call((trigger, input.as_ref(), env))
            .catch(&ctx)
            .map_err(|e| describe(&ctx, Some(&api), e))?;
        let result = match result.as_promise() {
            Some(p) => match p.finish::<Value<'_>>() {
                Err(rquickjs::Error::WouldBlock) => {
                    return Err(
                        "fnvm-js: the handler's Promise never settled (nothing left to run)\n"
                            .into(),
                    )
                }
                r => r.catch(&ctx).map_err(|e| describe(&ctx, Some(&api), e))?,
            },
            None => result,
        };
        if let Some(s) = result.as_string() {
            let s = s.to_string().map_err(|e| format!("fnvm-js: {e}"))?;
            natives::write(1, s.as_bytes());
        } else if let Some(b) = result
            .as_object()
            .and_then(|o| TypedArray::<u8>::from_object(o.clone()).ok())
        {
            // SAFETY: no JavaScript runs while the slice is borrowed.
            natives::write(1, unsafe { b.as_bytes() }.unwrap_or(&[]));
        }
        Ok(())
    })
}

fn main() {
    natives::seed_random();
    let ready = ENGINE.with(|e| e.borrow().is_some());
    if !ready {
        // The engine as built, not pre-initialised: evaluate the script now (benchmarks).
        let Ok(script) = std::env::var("FNVM_JS_SCRIPT") else {
            fail("fnvm-js: this engine was not pre-initialised (run fnvm_preinit with the script, or set FNVM_JS_SCRIPT)");
        };
        match init(&script) {
            Ok(engine) => ENGINE.with(|e| *e.borrow_mut() = Some(engine)),
            Err(msg) => fail(&msg),
        }
    }
    let trigger = std::env::var("FNVM_TRIGGER").unwrap_or_default();
    let input = read_stdin();
    let result = ENGINE.with(|e| match e.borrow().as_ref() {
        Some(engine) => invoke(engine, &trigger, &input),
        None => Err("fnvm-js: no engine".into()),
    });
    if let Err(msg) = result {
        fail(&msg);
    }
    natives::flush();
}
