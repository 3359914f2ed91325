//! The `fnvm` command line: `fnvm compile` turns a WebAssembly module into an fnvm artifact and
//! `fnvm wast` runs WebAssembly specification scripts against the compiler and runtime.
//! Argument parsing and reporting live here; the work is in `fnvm_compiler` and [`fnvm::wast`].

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
    if bytes.starts_with(b"\0asm") {
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
