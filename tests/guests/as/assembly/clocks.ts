// Clocks and randomness (clock_time_get, random_get): prints the realtime clock in whole
// seconds since the epoch (the test compares it with the host's), whether the monotonic clock
// moved forward across some work, and whether two 32-byte random reads differ and are not all
// zero.
import { println, yes } from "./wasi";

println("realtime: " + (Date.now() / 1000).toString());

let start = process.hrtime();
let x: u64 = 1;
for (let i: u64 = 0; i < 1000000; i++) {
  x = x * 6364136223846793005 + i;
}
let end = process.hrtime();
println("monotonic increases: " + yes(end > start && x != 0));

function allZero(a: Uint8Array): bool {
  for (let i = 0; i < a.length; i++) if (a[i] != 0) return false;
  return true;
}

let a = new Uint8Array(32);
let b = new Uint8Array(32);
crypto.getRandomValues(a);
crypto.getRandomValues(b);
let same = true;
for (let i = 0; i < 32; i++) if (a[i] != b[i]) same = false;
println("random differs: " + yes(!same));
println("random nonzero: " + yes(!allZero(a) && !allZero(b)));
