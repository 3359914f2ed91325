//! A trapping guest: panics, which prints the panic message on stderr and then aborts with the
//! `unreachable` instruction (panic = "abort"), i.e. a trap, not proc_exit.
#[inline(never)]
fn deliberately_trap(what: &str) {
    println!("about to trap");
    panic!("deliberate panic: {what}");
}

fn main() {
    deliberately_trap("boom");
    println!("LEAK: still running after the panic");
}
