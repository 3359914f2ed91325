// A "trapping" guest: Go turns a runtime error into a panic, prints it with a goroutine trace
// on stderr and exits with status 2 through proc_exit; that is not a wasm trap. Here the panic
// is a write to a nil map inside deliberatelyPanic.
package main

import "fmt"

//go:noinline
func deliberatelyPanic(m map[string]int) {
	fmt.Println("about to panic")
	m["boom"] = 1
}

func main() {
	deliberatelyPanic(nil)
	fmt.Println("LEAK: still running after the panic")
}
