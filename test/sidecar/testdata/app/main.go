// Command app is the application container of the sidecar tests: a static
// binary that runs as /app in a root of its own. It starts a worker process
// (so that a container has more than one process to kill), prints
// "ready <worker pid>" and sleeps until killed.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		sleep()
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

func sleep() {
	for {
		time.Sleep(time.Hour)
	}
}
