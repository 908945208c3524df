package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar returns a progress callback drawing a bar for name on w when w is a terminal,
// and otherwise writing a plain line each time another tenth is done (scripts and logs get
// no carriage returns, and at most 11 lines a file).
func progressBar(w io.Writer, name string) func(done, total int64) {
	if !isTerminal(w) {
		last := int64(-1)
		return func(done, total int64) {
			tenth := int64(10)
			if total > 0 {
				tenth = done * 10 / total
			}
			if tenth == last {
				return
			}
			last = tenth
			fmt.Fprintln(w, progressLine(name, done, total))
		}
	}
	return func(done, total int64) {
		fmt.Fprint(w, renderBar(name, done, total))
		if done >= total {
			fmt.Fprintln(w)
		}
	}
}

// renderBar is one redraw of the bar: "\r name [#####.....]  42% 420 MiB/1000 MiB".
func renderBar(name string, done, total int64) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	fill := int(frac * width)
	return fmt.Sprintf("\r%s [%s%s] %3d%% %s/%s", name, strings.Repeat("#", fill), strings.Repeat(".", width-fill), int(frac*100), mib(done), mib(total))
}

// progressLine is a plain report of progress: "name: 42% sent (420 MiB of 1000 MiB)".
func progressLine(name string, done, total int64) string {
	pct := int64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	return fmt.Sprintf("%s: %d%% sent (%s of %s)", name, pct, mib(done), mib(total))
}

func mib(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", (n+1023)>>10)
}
