// Hello world: one fd_write to stdout, then main returns (exit status 0).
package main

import "fmt"

func main() {
	fmt.Println("Hello Go!")
}
