// Exit codes (proc_exit): prints "exiting with N" and exits with status N = os.Args[1].
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	code, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	fmt.Printf("exiting with %d\n", code)
	os.Exit(code)
}
