//! Stdin to stdout (fd_read, fd_write): copies stdin to stdout upper-casing ASCII letters, in
//! 4 KiB reads, then prints `read N bytes` on stderr.
use std::io::{Read, Write};

fn main() {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        let n = stdin.read(&mut buf).expect("reading stdin");
        if n == 0 {
            break;
        }
        total += n;
        buf[..n].make_ascii_uppercase();
        stdout.write_all(&buf[..n]).expect("writing stdout");
    }
    stdout.flush().expect("flushing stdout");
    eprintln!("read {total} bytes");
}
