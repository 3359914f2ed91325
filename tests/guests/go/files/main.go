// Files and directories in a preopened directory (os.Args[1], as the guest sees it): path_open
// (create, truncate, append), fd_write, fd_read, fd_seek (start, end), fd_tell,
// fd_filestat_set_size, fd_filestat_get, path_filestat_get, path_rename, path_unlink_file,
// path_create_directory, fd_readdir, path_remove_directory. The host puts host.txt there
// first; the guest leaves renamed.txt behind. Every language prints the same lines.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

var dir string

func path(name string) string { return dir + "/" + name }

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func readRest(f *os.File) string {
	b, err := io.ReadAll(f)
	check(err)
	return string(b)
}

func kind(p string) string {
	st, err := os.Stat(p)
	switch {
	case err != nil:
		return "missing"
	case st.IsDir():
		return "dir"
	case st.Mode().IsRegular():
		return "file"
	}
	return "other"
}

func listing(p string) string {
	entries, err := os.ReadDir(p) // sorted by name
	check(err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

func main() {
	dir = os.Args[1]
	host, err := os.ReadFile(path("host.txt"))
	check(err)
	fmt.Printf("host.txt: %s", host)

	f, err := os.OpenFile(path("data.txt"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	check(err)
	n, err := f.Write([]byte("Hello, files!"))
	check(err)
	fmt.Printf("write: %d\n", n)
	_, err = f.Seek(0, io.SeekStart)
	check(err)
	fmt.Printf("read: %s\n", readRest(f))
	pos, err := f.Seek(7, io.SeekStart)
	check(err)
	fmt.Printf("seek: %d\n", pos)
	fmt.Printf("read: %s\n", readRest(f))
	pos, err = f.Seek(0, io.SeekCurrent)
	check(err)
	fmt.Printf("tell: %d\n", pos)
	check(f.Truncate(5))
	st, err := f.Stat()
	check(err)
	fmt.Printf("truncate: size=%d\n", st.Size())
	pos, err = f.Seek(-2, io.SeekEnd)
	check(err)
	fmt.Printf("seek end-2: %d\n", pos)
	fmt.Printf("read: %s\n", readRest(f))
	check(f.Close())

	st, err = os.Stat(path("data.txt"))
	check(err)
	fmt.Printf("stat: size=%d type=%s\n", st.Size(), kind(path("data.txt")))
	f, err = os.OpenFile(path("data.txt"), os.O_WRONLY|os.O_APPEND, 0)
	check(err)
	_, err = f.Write([]byte(", again"))
	check(err)
	check(f.Close())
	data, err := os.ReadFile(path("data.txt"))
	check(err)
	fmt.Printf("append: %s\n", data)

	check(os.Rename(path("data.txt"), path("renamed.txt")))
	fmt.Println("rename: ok")
	fmt.Printf("data.txt: %s\n", kind(path("data.txt")))
	fmt.Printf("renamed.txt: %s\n", kind(path("renamed.txt")))

	check(os.Mkdir(path("sub"), 0o755))
	fmt.Println("mkdir: ok")
	fmt.Printf("sub: %s\n", kind(path("sub")))
	for _, name := range []string{"sub/b.txt", "sub/a.txt"} {
		f, err := os.Create(path(name))
		check(err)
		check(f.Close())
	}
	check(os.Mkdir(path("sub/nested"), 0o755))
	fmt.Printf("readdir sub: %s\n", listing(path("sub")))
	if os.Remove(path("sub")) != nil {
		fmt.Println("rmdir non-empty: error")
	} else {
		fmt.Println("rmdir non-empty: ok")
	}
	check(os.Remove(path("sub/a.txt")))
	check(os.Remove(path("sub/b.txt")))
	fmt.Println("unlink: ok")
	check(os.Remove(path("sub/nested")))
	check(os.Remove(path("sub")))
	fmt.Println("rmdir: ok")
	fmt.Printf("sub: %s\n", kind(path("sub")))
	fmt.Printf("readdir: %s\n", listing(dir))
}
