// Arguments and environment (args_get, environ_get): prints argv[1..] one per line, then the
// environment variables whose names start with GUEST_, sorted by name, as NAME=VALUE.
let argv = process.argv;
for (let i = 1; i < argv.length; i++) {
  process.stdout.write(argv[i] + "\n");
}
let names = process.env.keys().filter((name: string): bool => name.startsWith("GUEST_"));
names.sort();
for (let i = 0; i < names.length; i++) {
  process.stdout.write(names[i] + "=" + process.env.get(names[i]) + "\n");
}
