//! The `fnvm` command line: `fnvm run` runs a WASI program (a `.wasm`, compiled through the
//! on-disk cache, or an artifact) in a pooled instance; `fnvm compile` turns a WebAssembly
//! module into an fnvm artifact; `fnvm wast` runs WebAssembly specification scripts against the
//! compiler and runtime. Argument parsing and reporting live here; the work is in
//! `fnvm_dataplane`, `fnvm_compiler` and [`fnvm::wast`].

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Parser)]
#[command(name = "fnvm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a WASI program: a WebAssembly module (`.wasm` or `.wat`, compiled once and cached by
    /// content hash) or an fnvm artifact. Arguments after FILE go to the program. The exit
    /// status is the program's (`proc_exit`, or 0 when `_start` returns); a trap prints its
    /// kind and backtrace on stderr and exits with status 134; an error of fnvm itself (missing
    /// file, invalid module, unknown import) exits with status 1.
    #[command(override_usage = "fnvm run [OPTIONS] FILE [ARGS]...")]
    Run(RunArgs),
    /// Compile a WebAssembly module (binary or text format) into an fnvm artifact.
    Compile {
        /// The module: a `.wasm` binary or `.wat` text.
        input: PathBuf,
        /// Where to write the artifact (or, with `--emit-clif`, the IR text).
        #[arg(short, long)]
        output: PathBuf,
        /// Write our lowering of every function as Cranelift IR text instead of an artifact.
        #[arg(long)]
        emit_clif: bool,
    },
    /// Run WebAssembly specification test scripts (`.wast`) and count passed and failed
    /// directives. Exits with status 1 if any directive failed.
    Wast {
        /// The scripts.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Skip scripts whose file name contains this text (repeatable), e.g. `--exclude simd_`
        /// for the SIMD scripts, as fnvm does not support SIMD.
        #[arg(long, value_name = "TEXT")]
        exclude: Vec<String>,
        /// Run this many scripts at a time, each on its own thread with its own store.
        #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        jobs: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Compile {
            input,
            output,
            emit_clif,
        } => compile(&input, &output, emit_clif).map(|()| ExitCode::SUCCESS),
        Command::Wast {
            files,
            exclude,
            jobs,
        } => wast(&files, &exclude, usize::from(jobs)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("fnvm: error: {e:#}");
        ExitCode::FAILURE
    })
}

/// The options and operands of `fnvm run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Set an environment variable for the program: `NAME=VALUE`, or `NAME` to pass the
    /// host's value (repeatable).
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Give the program a host directory: `HOST::GUEST` makes HOST visible at guest path
    /// GUEST, `HOST` alone at the same path (repeatable). Nothing outside it is reachable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Feed this file as standard input (default: fnvm's own standard input).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Print the debug report (JSON: stdout, stderr, dmesg trace, trigger, responseBody,
    /// currentPages, size) instead of the program's output. The exit status is still the
    /// program's.
    #[arg(long)]
    debug: bool,
    /// Maximum linear memory of the program, in bytes (the Function's maxMemory).
    #[arg(long, value_name = "BYTES")]
    max_memory: Option<u64>,
    /// Stop the program after this many milliseconds (a trap, status 134).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// The program, then its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "FILE [ARGS]"
    )]
    command: Vec<String>,
}

/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Exit status for a guest trap, as `wasmtime run` uses (128 + SIGABRT).
const TRAP_EXIT_STATUS: i32 = 134;

fn run(args: RunArgs) -> Result<ExitCode> {
    use fnvm_dataplane::{Invocation, Runner, RunnerConfig, Status};
    use fnvm_hostcalls::{Output, Stdin};
    let Some(file) = args.command.first() else {
        anyhow::bail!("no program given");
    };
    let path = Path::new(file);
    // Mapped, not read: a large module is hashed (and, on a cache miss, compiled) in place.
    let mapped = std::fs::File::open(path)
        .and_then(|f| fnvm_runtime::MappedFile::new(&f))
        .with_context(|| format!("reading {file}"))?;
    let text;
    let bytes: &[u8] = if mapped.bytes().starts_with(WASM_MAGIC)
        || mapped.bytes().starts_with(&fnvm_abi::artifact::MAGIC)
    {
        mapped.bytes()
    } else {
        text = to_wasm(path, mapped.bytes())?;
        &text
    };
    let runner = Runner::new(RunnerConfig {
        pool: fnvm_runtime::PoolConfig {
            slots: 1,
            max_memory_pages: 65536,
            background_reset: false,
            ..fnvm_runtime::PoolConfig::default()
        },
        // The ticker thread only runs when there is a deadline to count.
        epoch_tick: args
            .timeout_ms
            .map(|_| std::time::Duration::from_millis(10)),
        ..RunnerConfig::default()
    })?;
    let function = runner
        .load(bytes)
        .with_context(|| format!("loading {file}"))?;
    let mut env = Vec::new();
    for e in &args.env {
        match e.split_once('=') {
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(e) {
                    env.push((e.clone(), v));
                }
            }
        }
    }
    let preopens = args
        .dirs
        .iter()
        .map(|d| match d.split_once("::") {
            Some((host, guest)) => (PathBuf::from(host), guest.to_string()),
            None => (PathBuf::from(d), d.clone()),
        })
        .collect();
    let stdin = match &args.stdin {
        Some(p) => {
            Stdin::Bytes(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => Stdin::Inherit,
    };
    let limits = fnvm_runtime::InstanceLimits {
        max_memory_bytes: args.max_memory,
        timeout: args.timeout_ms.map(std::time::Duration::from_millis),
        ..fnvm_runtime::InstanceLimits::default()
    };
    let outcome = runner.invoke(
        &function,
        Invocation {
            args: args.command.clone(),
            env,
            preopens,
            stdin,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            debug: args.debug,
            limits,
            ..Invocation::default()
        },
    )?;
    if let Some(report) = &outcome.report {
        println!("{}", report.to_json());
    }
    let code = match &outcome.status {
        Status::Exited(code) => *code,
        Status::Trapped(trap) => {
            if !args.debug {
                eprintln!("fnvm: {file}: trap: {trap}");
            }
            TRAP_EXIT_STATUS
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    drop(runner);
    std::process::exit(code)
}

fn compile(input: &Path, output: &Path, emit_clif: bool) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let wasm = to_wasm(input, &bytes)?;
    let options = fnvm_compiler::CompileOptions::default();
    let artifact = if emit_clif {
        fnvm_compiler::translate_to_clif(&wasm, &options).map(String::into_bytes)
    } else {
        fnvm_compiler::compile(&wasm, &options)
    }
    .with_context(|| format!("compiling {}", input.display()))?;
    std::fs::write(output, artifact).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// The module's binary form: binaries as they are, text (`.wat`) converted. Bytes that are
/// neither go to the compiler, which says at which offset they stop being WebAssembly.
fn to_wasm(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.starts_with(WASM_MAGIC) {
        return Ok(bytes.to_vec());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => wat::parse_str(text).map_err(|mut e| {
            e.set_path(path);
            anyhow::Error::new(e).context(format!(
                "{} is neither a WebAssembly binary nor valid text format",
                path.display()
            ))
        }),
        Err(_) => Ok(bytes.to_vec()),
    }
}

fn wast(files: &[PathBuf], exclude: &[String], jobs: usize) -> Result<ExitCode> {
    let file_name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    };
    let (excluded, scripts): (Vec<&PathBuf>, Vec<&PathBuf>) = files.iter().partition(|path| {
        let name = file_name(path);
        exclude
            .iter()
            .any(|pattern| name.contains(pattern.as_str()))
    });
    let results = run_scripts(&scripts, jobs);

    let mut total = fnvm::wast::Counts::default();
    for (path, result) in scripts.iter().zip(results) {
        let name = file_name(path);
        match result {
            Ok(counts) => {
                for failure in &counts.failures {
                    eprintln!("{failure}");
                }
                println!("{name}: {counts}");
                total.add(counts);
            }
            Err(e) => {
                // A script that cannot run at all counts as one failure.
                eprintln!("{}: error: {e:#}", path.display());
                println!("{name}: error");
                total.failures.push(fnvm::wast::Failure {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    directive: "script",
                    reason: format!("{e:#}"),
                });
            }
        }
    }
    if !excluded.is_empty() {
        println!("skipped {} excluded scripts", excluded.len());
    }
    println!("{total}");
    Ok(if total.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `scripts` on up to `jobs` threads; the results are in the order of `scripts`.
fn run_scripts(scripts: &[&PathBuf], jobs: usize) -> Vec<Result<fnvm::wast::Counts>> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<fnvm::wast::Counts>>>> =
        scripts.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(scripts.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = scripts.get(i) else {
                    break;
                };
                let result = fnvm::wast::run_file(path);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(anyhow::anyhow!("the script was not run")))
        })
        .collect()
}
