// Stdin to stdout (fd_read, fd_write): copies stdin to stdout upper-casing ASCII letters, in
// 4 KiB reads, then prints "read N bytes" on stderr.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

func main() {
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			total += n
			if _, werr := os.Stdout.Write(bytes.ToUpper(buf[:n])); werr != nil {
				panic(werr)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
	}
	fmt.Fprintf(os.Stderr, "read %d bytes\n", total)
}
