//! AssemblyScript builds: the project layout (a single `.ts` file becomes `assembly/index.ts`
//! of a generated package; an archive must hold `assembly/index.ts`) and the `asc` command run
//! in the sandbox.
//!
//! The compiler and the WASI shim come from the operator's `assemblyscript/node_modules`,
//! linked as the project's `node_modules` (an archive's own node_modules is replaced: packages
//! come from the platform only). Without an `asconfig.json` the build uses the WASI shim's
//! (`node_modules/@assemblyscript/wasi-shim/asconfig.json`); a project's own `asconfig.json`
//! is used instead and should extend that one (`"extends":
//! "./node_modules/@assemblyscript/wasi-shim/asconfig.json"`) for the module to be a WASI
//! program. Always `-O3`, the module written where the build script expects it.

use crate::archive;
use crate::sandbox::Job;
use crate::toolchains::Toolchains;
use crate::workdir::{check_file_name, write_file, Workdir};
use crate::{BuildError, Limits, Source};

const NODE_MODULES: &str = "/opt/fnvm/assemblyscript/node_modules";

pub(crate) fn prepare(
    source: &Source,
    toolchains: &Toolchains,
    work: &Workdir,
    limits: &Limits,
) -> Result<Job, BuildError> {
    let tools = toolchains.assemblyscript()?;
    let src = match source {
        Source::File { name, bytes } => {
            check_file_name(name, "ts", "AssemblyScript")?;
            write_file(work.src(), "assembly/index.ts", bytes)?;
            work.src().to_path_buf()
        }
        Source::Archive { bytes } => {
            archive::extract(bytes, work.src(), limits)?;
            let root = archive::project_root(work.src())?;
            if !root.join("assembly/index.ts").is_file() {
                return Err(BuildError::Source(
                    "an AssemblyScript archive must hold assembly/index.ts at its root (or in its only top-level directory)".into(),
                ));
            }
            root
        }
    };
    let node = tools.node.to_string_lossy().into_owned();
    if node.contains(['\'', '\n']) {
        return Err(BuildError::Sandbox(format!("unusable node path {node:?}")));
    }
    Ok(Job {
        src,
        binds: vec![(tools.node_modules, NODE_MODULES)],
        env: vec![],
        path: "/usr/bin:/bin",
        build: format!(
            r#"rm -rf node_modules && ln -s {NODE_MODULES} node_modules || exit 1
if [ -f asconfig.json ]; then config=asconfig.json; else config=node_modules/@assemblyscript/wasi-shim/asconfig.json; fi
'{node}' node_modules/assemblyscript/bin/asc.js assembly/index.ts --config "$config" -O3 --outFile /tmp/function.wasm"#
        ),
        artifact: "ARTIFACT=/tmp/function.wasm".into(),
    })
}
