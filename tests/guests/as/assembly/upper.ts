// Stdin to stdout (fd_read, fd_write): copies stdin to stdout upper-casing ASCII letters, in
// 4 KiB reads, then prints "read N bytes" on stderr.
let buf = new ArrayBuffer(4096);
let bytes = Uint8Array.wrap(buf);
let total = 0;
while (true) {
  let n = process.stdin.read(buf);
  if (n == 0) break;
  total += n;
  for (let i = 0; i < n; i++) {
    let c = bytes[i];
    if (c >= 0x61 && c <= 0x7a) bytes[i] = c - 0x20;
  }
  process.stdout.write(buf.slice(0, n));
}
process.stderr.write("read " + total.toString() + " bytes\n");
