//! Compiling a WebAssembly module into an artifact: fnvm's compiler in a child process (`fnvm
//! compile`) under CPU-time, memory and wall-clock limits, so that hostile input cannot take
//! the server down; its messages become the deployment's `errorReason`.

use super::{Failed, PackagerConfig};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// Most bytes of the compiler's messages kept for `errorReason`.
pub(super) const MAX_REASON: usize = 2048;

/// Compiles `wasm` in a child `fnvm compile` under the configured limits.
pub(super) async fn compile(
    config: &PackagerConfig,
    id: &str,
    wasm: &[u8],
) -> Result<Vec<u8>, Failed> {
    let io = |what: &str, e: std::io::Error| Failed(format!("{what}: {e}"));
    tokio::fs::create_dir_all(&config.work_dir)
        .await
        .map_err(|e| io("creating the work directory", e))?;
    let input = config.work_dir.join(format!("{id}.wasm"));
    let output = config.work_dir.join(format!("{id}.fnvm"));
    let _cleanup = RemoveOnDrop(vec![input.clone(), output.clone()]);
    tokio::fs::write(&input, wasm)
        .await
        .map_err(|e| io("writing the compiler's input", e))?;
    let mut child = tokio::process::Command::new(&config.compiler)
        .arg("compile")
        .arg("--max-cpu-seconds")
        .arg(config.cpu_seconds.to_string())
        .arg("--max-memory-bytes")
        .arg(config.memory_bytes.to_string())
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| io("starting the compiler", e))?;
    let mut stderr = child.stderr.take();
    let messages = async {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            // Bounded: a compiler cannot make the server hold more than this of its output.
            let _ = s.take(64 << 10).read_to_end(&mut buf).await;
        }
        buf
    };
    let waited = tokio::time::timeout(config.wall_timeout, async {
        let (status, messages) = tokio::join!(child.wait(), messages);
        (status, messages)
    })
    .await;
    let (status, messages) = match waited {
        Ok(r) => r,
        Err(_) => {
            let _ = child.kill().await;
            return Err(Failed(format!(
                "compilation took longer than {:?} and was stopped",
                config.wall_timeout
            )));
        }
    };
    let status = status.map_err(|e| io("waiting for the compiler", e))?;
    if !status.success() {
        // The compiler names its input by path: the user sees "the module", not where the
        // server keeps its files.
        let text =
            String::from_utf8_lossy(&messages).replace(&input.display().to_string(), "the module");
        let text = text.trim();
        let reason = if text.is_empty() {
            match status.code() {
                Some(c) => format!("the compiler failed with status {c}"),
                None => "the compiler was stopped by a signal (a CPU-time or memory limit)".into(),
            }
        } else {
            text.to_string()
        };
        return Err(Failed(trim(reason)));
    }
    tokio::fs::read(&output)
        .await
        .map_err(|e| io("reading the compiler's output", e))
}

/// `s` cut to [`MAX_REASON`] bytes on a character boundary.
pub(super) fn trim(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut at = MAX_REASON;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push_str(" [...]");
    }
    s
}

pub(super) struct RemoveOnDrop(pub(super) Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}
