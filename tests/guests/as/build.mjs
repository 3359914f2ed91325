// Compiles AssemblyScript guests with the WASI shim, all in one node process (asc's start-up
// is most of its time): `node build.mjs OUT_DIR NAME...` turns assembly/NAME.ts into
// OUT_DIR/NAME.wasm. Called by scripts/guests.sh.
import asc from "assemblyscript/asc";
import { renameSync } from "node:fs";
import { join } from "node:path";

const [outDir, ...names] = process.argv.slice(2);
for (const name of names) {
  const out = join(outDir, `${name}.wasm`);
  const tmp = `${out}.tmp`;
  const { error, stderr } = await asc.main([
    `assembly/${name}.ts`,
    "--config", "node_modules/@assemblyscript/wasi-shim/asconfig.json",
    "-O3",
    "--debug", // keeps the name section, for backtraces
    "-o", tmp,
  ]);
  if (error) {
    console.error(`asc ${name}: ${error.message}\n${stderr.toString()}`);
    process.exit(1);
  }
  renameSync(tmp, out);
}
