// Heartbeat for the committer benchmark: runs inside a sandbox container and records, on a file
// outside the captured filesystem, every stall longer than the threshold as "<startNs> <endNs>"
// (wall-clock nanoseconds, shared with the host). A paused container stalls it; nothing else should.
// Built with `go build` (standard library only) into a static binary by bench/committer.ts.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: heartbeat <out-file> <threshold-ms>")
		os.Exit(2)
	}
	f, err := os.OpenFile(os.Args[1], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ms, err := strconv.Atoi(os.Args[2])
	if err != nil || ms <= 0 {
		fmt.Fprintln(os.Stderr, "threshold-ms must be a positive integer")
		os.Exit(2)
	}
	threshold := time.Duration(ms) * time.Millisecond
	fmt.Fprintf(f, "start %d\n", time.Now().UnixNano())
	last := time.Now()
	for {
		time.Sleep(time.Millisecond)
		now := time.Now()
		if gap := now.Sub(last); gap > threshold { // monotonic difference
			fmt.Fprintf(f, "%d %d\n", last.UnixNano(), now.UnixNano())
		}
		last = now
	}
}
