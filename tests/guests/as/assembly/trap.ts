// A trapping guest: prints a line on stdout and one on stderr, then executes the `unreachable`
// instruction (the optimizer inlines the function that does it into the start function).
function deliberatelyTrap(): void {
  process.stdout.write("about to trap\n");
  process.stderr.write("trapping now\n");
  unreachable();
}

deliberatelyTrap();
process.stdout.write("LEAK: still running after the trap\n");
