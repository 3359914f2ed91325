// Clocks and randomness (clock_time_get, random_get): prints the realtime clock in whole
// seconds since the epoch (the test compares it with the host's), whether the monotonic clock
// moved forward across some work, and whether two 32-byte random reads differ and are not all
// zero.
package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"time"
)

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

var sink uint64

func main() {
	fmt.Printf("realtime: %d\n", time.Now().Unix())

	start := time.Now()
	x := uint64(1)
	for i := uint64(0); i < 1000000; i++ {
		x = x*6364136223846793005 + i
	}
	sink = x
	// time.Since uses the monotonic reading that time.Now carries.
	fmt.Printf("monotonic increases: %s\n", yes(time.Since(start) > 0))

	a, b := make([]byte, 32), make([]byte, 32)
	if _, err := rand.Read(a); err != nil {
		panic(err)
	}
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	zero := make([]byte, 32)
	fmt.Printf("random differs: %s\n", yes(!bytes.Equal(a, b)))
	fmt.Printf("random nonzero: %s\n", yes(!bytes.Equal(a, zero) && !bytes.Equal(b, zero)))
}
