// Command app is the application container of the sidecar tests: a static
// binary that runs as /app in a root of its own. It starts a worker process
// (so that a container has more than one process to kill), prints
// "ready <worker pid>" and sleeps until killed.
//
// `app memfd` copies /app into a memfd and executes that as a worker:
// fileless execution, for the execution drift tests.
//
// `app true` exits at once; `app spawn RATE` runs `/app true` RATE times a
// second until killed: the short processes of a busy app, for the
// execution drift benchmark.
//
// `app mmap PATH SIZE` is a process of the app that writes a file through a
// shared mapping: it maps SIZE bytes of PATH shared and writable, closes the
// descriptor, prints "mapped", and copies each line of its standard input
// (with its newline) into the mapping (never with write(2)), printing
// "written", holding the mapping until killed.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		sleep()
	}
	if len(os.Args) == 2 && os.Args[1] == "memfd" {
		memfdExec()
	}
	if len(os.Args) == 2 && os.Args[1] == "true" {
		os.Exit(0)
	}
	if len(os.Args) == 3 && os.Args[1] == "spawn" {
		spawn(os.Args[2])
	}
	if len(os.Args) == 4 && os.Args[1] == "mmap" {
		mmapWriter(os.Args[2], os.Args[3])
	}
	// The root holds no /dev/null: the worker gets the app's own streams.
	w := exec.Command("/app", "worker")
	w.Stdin, w.Stdout, w.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := w.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "app: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", w.Process.Pid)
	sleep()
}

func mmapWriter(path, size string) {
	n, err := strconv.Atoi(size)
	if err != nil {
		fmt.Fprintf(os.Stderr, "app mmap: %v\n", err)
		os.Exit(1)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "app mmap: %v\n", err)
		os.Exit(1)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fmt.Fprintf(os.Stderr, "app mmap: %v\n", err)
		os.Exit(1)
	}
	f.Close() // the mapping stays
	fmt.Println("mapped")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		copy(b, in.Text()+"\n")
		fmt.Println("written")
	}
	sleep()
}

func sleep() {
	for {
		time.Sleep(time.Hour)
	}
}

func memfdExec() {
	b, err := os.ReadFile(os.Args[0]) // /app, or wherever a test copied it
	if err != nil {
		fmt.Fprintf(os.Stderr, "app memfd: %v\n", err)
		os.Exit(1)
	}
	fd, err := unix.MemfdCreate("payload", unix.MFD_CLOEXEC)
	if err == nil {
		_, err = unix.Write(fd, b)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "app memfd: %v\n", err)
		os.Exit(1)
	}
	// fexecve: the container's root has no /proc for /proc/self/fd/N.
	argv, _ := syscall.SlicePtrFromStrings([]string{"payload", "worker"})
	envv, _ := syscall.SlicePtrFromStrings(os.Environ())
	empty, _ := unix.BytePtrFromString("")
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	fmt.Fprintf(os.Stderr, "app memfd: execveat: %v\n", errno)
	os.Exit(1)
}

func spawn(rate string) {
	n, err := strconv.Atoi(rate)
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "app spawn: bad rate %q\n", rate)
		os.Exit(1)
	}
	fmt.Println("spawning")
	for range time.Tick(time.Second / time.Duration(n)) {
		c := exec.Command("/app", "true")
		if err := c.Start(); err == nil {
			go c.Wait()
		}
	}
}
