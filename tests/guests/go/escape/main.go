// Escapes from a preopened directory (os.Args[1] as the guest sees it; the host preopens only
// it, as fd 3, with outside.txt next to it and symlinks inside). Opening through package os
// and through raw path_open calls (go:wasmimport) on fd 3: every way out must fail ("denied";
// "LEAK" if it succeeded), while the controls inside the directory must work ("ok").
package main

import (
	"fmt"
	"os"
	"unsafe"
)

//go:wasmimport wasi_snapshot_preview1 path_open
//go:noescape
func pathOpen(fd int32, dirflags uint32, path unsafe.Pointer, pathLen uint32, oflags uint32,
	rightsBase, rightsInheriting uint64, fdflags uint32, opened unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_close
func fdClose(fd int32) uint32

const (
	preopen             = 3
	lookupSymlinkFollow = 1
	oCreat              = 1
	allRights           = 0x1fffffff
)

var dir string

func report(label string, opened, shouldOpen bool) {
	verdict := map[[2]bool]string{
		{true, true}: "ok", {false, false}: "denied", {true, false}: "LEAK", {false, true}: "FAILED",
	}[[2]bool{opened, shouldOpen}]
	fmt.Printf("%s: %s\n", label, verdict)
}

func tryOpen(p string, flag int) bool {
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func rawOpen(label, p string, oflags uint32) {
	buf := []byte(p)
	var fd int32
	errno := pathOpen(preopen, lookupSymlinkFollow, unsafe.Pointer(&buf[0]), uint32(len(buf)),
		oflags, allRights, allRights, 0, unsafe.Pointer(&fd))
	if errno == 0 {
		fdClose(fd)
	}
	report(label, errno == 0, false)
}

func main() {
	dir = os.Args[1]
	in := func(name string) string { return dir + "/" + name }
	report("inside", tryOpen(in("inside.txt"), os.O_RDONLY), true)
	report("link-inside", tryOpen(in("link-inside"), os.O_RDONLY), true)
	report("dotdot", tryOpen(in("../outside.txt"), os.O_RDONLY), false)
	report("etc-passwd", tryOpen("/etc/passwd", os.O_RDONLY), false)
	report("link-abs", tryOpen(in("link-abs"), os.O_RDONLY), false)
	report("link-rel", tryOpen(in("link-rel"), os.O_RDONLY), false)
	report("link-dir", tryOpen(in("link-dir/outside.txt"), os.O_RDONLY), false)
	report("create-outside", tryOpen(in("../escaped.txt"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC), false)

	rawOpen("raw-dotdot", "../outside.txt", 0)
	rawOpen("raw-abs", "/etc/passwd", 0)
	rawOpen("raw-deep", "inside-dir/../../outside.txt", 0)
	rawOpen("raw-create", "../escaped.txt", oCreat)
}
