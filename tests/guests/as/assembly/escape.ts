// Escapes from a preopened directory (argv[1] as the guest sees it; the host preopens only it,
// as fd 3, with outside.txt next to it and symlinks inside). AssemblyScript has no file API,
// so every attempt is a raw path_open: on the preopen found by name (the lines a libc would
// produce) and on fd 3 (the "raw-" lines). Every way out must fail ("denied"; "LEAK" if it
// succeeded), while the controls inside the directory must work ("ok").
import { O_CREAT, O_TRUNC, fd_close, openAt, preopen, println } from "./wasi";

let found = preopen(process.argv[1]);
if (found < 0) throw new Error("no preopen for " + process.argv[1]);
let dir = <u32>found;

function report(label: string, fd: i32, shouldOpen: bool): void {
  if (fd >= 0) fd_close(<u32>fd);
  let opened = fd >= 0;
  let verdict = opened ? (shouldOpen ? "ok" : "LEAK") : (shouldOpen ? "FAILED" : "denied");
  println(label + ": " + verdict);
}

report("inside", openAt(dir, "inside.txt"), true);
report("link-inside", openAt(dir, "link-inside"), true);
report("dotdot", openAt(dir, "../outside.txt"), false);
// No preopen covers /etc: the nearest thing a libc could try is the path relative to ours.
report("etc-passwd", openAt(dir, "/etc/passwd"), false);
report("link-abs", openAt(dir, "link-abs"), false);
report("link-rel", openAt(dir, "link-rel"), false);
report("link-dir", openAt(dir, "link-dir/outside.txt"), false);
report("create-outside", openAt(dir, "../escaped.txt", O_CREAT | O_TRUNC), false);

report("raw-dotdot", openAt(3, "../outside.txt"), false);
report("raw-abs", openAt(3, "/etc/passwd"), false);
report("raw-deep", openAt(3, "inside-dir/../../outside.txt"), false);
report("raw-create", openAt(3, "../escaped.txt", O_CREAT), false);
