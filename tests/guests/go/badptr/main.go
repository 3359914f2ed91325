// Bad pointers handed to the host through raw WASI imports (go:wasmimport, pointers passed as
// plain uint32): an iovec array at 0xFFFFFFF0, an iovec whose buffer runs past the end of
// memory, an out-of-bounds nwritten, an iovec count too large for memory, an out-of-bounds
// path for path_open (on the preopen, fd 3), a huge random_get, out-of-bounds args_get and
// clock_time_get results. Each must fail with errno 21 (EFAULT) without killing the guest,
// which prints every errno and then "survived".
package main

import (
	"fmt"
	"unsafe"
)

//go:wasmimport wasi_snapshot_preview1 fd_write
func fdWrite(fd int32, iovs, iovsLen, nwritten uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_read
func fdRead(fd int32, iovs, iovsLen, nread uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_open
func pathOpen(fd int32, dirflags, path, pathLen, oflags uint32, rightsBase, rightsInheriting uint64, fdflags, opened uint32) uint32

//go:wasmimport wasi_snapshot_preview1 random_get
func randomGet(buf, bufLen uint32) uint32

//go:wasmimport wasi_snapshot_preview1 args_get
func argsGet(argv, argvBuf uint32) uint32

//go:wasmimport wasi_snapshot_preview1 clock_time_get
func clockTimeGet(id uint32, precision uint64, time uint32) uint32

const bad = 0xFFFFFFF0

// Heap objects (Go does not move them) whose addresses are handed to the host.
var (
	text       = []byte("never written\n")
	goodIov    = new([2]uint32)
	pastEndIov = new([2]uint32)
	out        = new(uint32)
	buf        = make([]byte, 64)
)

func addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

func main() {
	goodIov[0], goodIov[1] = addr(unsafe.Pointer(&text[0])), uint32(len(text))
	// Go's memory is far smaller than 2 GiB, so this buffer runs past its end.
	pastEndIov[0], pastEndIov[1] = addr(unsafe.Pointer(&buf[0])), 0x7fffffff
	o := addr(unsafe.Pointer(out))

	fmt.Printf("fd_write bad iovs: %d\n", fdWrite(1, bad, 1, o))
	fmt.Printf("fd_write iov past memory: %d\n", fdWrite(1, addr(unsafe.Pointer(pastEndIov)), 1, o))
	fmt.Printf("fd_write bad nwritten: %d\n", fdWrite(1, addr(unsafe.Pointer(goodIov)), 1, bad))
	fmt.Printf("fd_write huge iovs_len: %d\n", fdWrite(1, addr(unsafe.Pointer(goodIov)), 0x10000000, o))
	fmt.Printf("fd_read iov past memory: %d\n", fdRead(0, addr(unsafe.Pointer(pastEndIov)), 1, o))
	fmt.Printf("path_open bad path: %d\n", pathOpen(3, 0, 0xFFFFFF00, 10, 0, 0, 0, 0, o))
	fmt.Printf("random_get huge len: %d\n", randomGet(addr(unsafe.Pointer(&buf[0])), 0x7fffffff))
	fmt.Printf("args_get bad argv: %d\n", argsGet(bad, bad))
	fmt.Printf("clock_time_get bad time: %d\n", clockTimeGet(1, 0, bad))
	fmt.Println("survived")
}
