package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/scan"
)

// Progress display of baseline, check and update: one line on standard
// error, rewritten in place, once a scan has run for progressAfter, and only
// when standard error is a terminal. It never writes to standard output (a
// JSON report stays one document) and it clears its line before the command
// prints anything else.
const (
	progressAfter = time.Second
	progressEvery = 250 * time.Millisecond
	// clearLine returns to the start of the line and erases it.
	clearLine = "\r\x1b[K"
)

// progress is a running display; nil when there is none.
type progress struct {
	w      io.Writer
	counts *scan.Progress
	start  time.Time
	now    func() time.Time
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// startProgress starts showing counts on w after the delay after, or
// returns nil when w is not a terminal. Stop ends it.
func startProgress(w io.Writer, counts *scan.Progress, after time.Duration) *progress {
	if w == nil || !isTerminal(w) {
		return nil
	}
	p := &progress{w: w, counts: counts, now: time.Now, stop: make(chan struct{}), done: make(chan struct{})}
	p.start = p.now()
	go p.run(after)
	return p
}

func (p *progress) run(after time.Duration) {
	defer close(p.done)
	t := time.NewTimer(after)
	defer t.Stop()
	select {
	case <-p.stop:
		return
	case <-t.C:
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		fmt.Fprint(p.w, clearLine+progressLine(p.counts.Entries.Load(), p.counts.Bytes.Load(), p.now().Sub(p.start)))
		select {
		case <-p.stop:
			fmt.Fprint(p.w, clearLine)
			return
		case <-tick.C:
		}
	}
}

// Stop ends the display and clears its line; it returns once nothing more
// will be written. It may be called more than once, and on nil.
func (p *progress) Stop() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// progressLine is the text of the display: entries, bytes hashed, their
// rates and the time elapsed.
func progressLine(entries, bytes int64, elapsed time.Duration) string {
	secs := elapsed.Seconds()
	var rate, brate float64
	if secs > 0 {
		rate, brate = float64(entries)/secs, float64(bytes)/secs
	}
	return fmt.Sprintf("podfim: %d entries, %s hashed, %.0f entries/s, %s/s, %s",
		entries, sizeString(float64(bytes)), rate, sizeString(brate), elapsed.Truncate(100*time.Millisecond))
}

// sizeString formats a number of bytes with a binary unit.
func sizeString(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", b, units[i])
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
