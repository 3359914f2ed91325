// Sleeping (poll_oneoff with a clock subscription): time.Sleep(50 ms), then one raw
// poll_oneoff (imported with go:wasmimport) on a relative 50 ms monotonic-clock timeout; each
// measured with the monotonic clock inside the guest. Prints whether at least 50 ms passed,
// and the event poll_oneoff returned.
package main

import (
	"fmt"
	"time"
	"unsafe"
)

//go:wasmimport wasi_snapshot_preview1 poll_oneoff
//go:noescape
func pollOneoff(subscriptions, events unsafe.Pointer, nsubscriptions uint32, nevents unsafe.Pointer) uint32

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func main() {
	const wait = 50 * time.Millisecond
	start := time.Now()
	time.Sleep(wait)
	fmt.Printf("sleep >= 50ms: %s\n", yes(time.Since(start) >= wait))

	// A 48-byte subscription and a 32-byte event, as little-endian 64-bit words.
	sub := [6]uint64{
		42,           // userdata
		0,            // tag (byte 8): clock
		1,            // clock id (offset 16): monotonic
		uint64(wait), // timeout (ns), relative
		0,            // precision
		0,            // flags
	}
	event := [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	var nevents uint32
	start = time.Now()
	errno := pollOneoff(unsafe.Pointer(&sub), unsafe.Pointer(&event), 1, unsafe.Pointer(&nevents))
	elapsed := time.Since(start)
	fmt.Printf("poll_oneoff: errno %d\n", errno)
	fmt.Printf("poll_oneoff >= 50ms: %s\n", yes(elapsed >= wait))
	kind := "other"
	if (event[1]>>16)&0xff == 0 {
		kind = "clock"
	}
	fmt.Printf("events: %d userdata: %d error: %d type: %s\n", nevents, event[0], event[1]&0xffff, kind)
}
