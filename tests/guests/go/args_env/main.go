// Arguments and environment (args_get, environ_get): prints os.Args[1:] one per line, then the
// environment variables whose names start with GUEST_, sorted by name, as NAME=VALUE.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	for _, arg := range os.Args[1:] {
		fmt.Println(arg)
	}
	var vars []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GUEST_") {
			vars = append(vars, kv)
		}
	}
	// "NAME=VALUE" strings sort by name as long as names are followed by '='.
	sort.Strings(vars)
	for _, kv := range vars {
		fmt.Println(kv)
	}
}
