// A Go WASI hello world (GOOS=wasip1 GOARCH=wasm): writes "Hello World\n" (12 bytes) to
// stdout with fmt, a large real module for the invocation benchmarks.
package main

import "fmt"

func main() {
	fmt.Print("Hello World\n")
}
