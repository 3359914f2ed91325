// Exit codes (proc_exit): prints "exiting with N" and exits with status N = argv[1].
let code = I32.parseInt(process.argv[1]);
process.stdout.write("exiting with " + code.toString() + "\n");
process.exit(code);
