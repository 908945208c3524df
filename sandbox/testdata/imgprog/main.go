// Command imgprog is a tiny static program that sandbox tests run on a
// runtime image (Spec.Image) and as an Exec mount. Each argument is one step,
// OP=ARG; it prints "STEP: ok" or "STEP: error" per step on stdout and exits
// 0 (exit 2 on a malformed step).
//
//	copy=SRC:DST   read SRC and write its content, upper-cased, to DST
//	read=PATH      print the content of PATH on its own line
//	write=PATH     create PATH
//	open=PATH      open PATH read-only
//	connect=ADDR   dial ADDR over TCP
//	exec=PATH      execute PATH
//	env=           print the environment, one variable a line
package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	for _, step := range os.Args[1:] {
		op, arg, ok := strings.Cut(step, "=")
		if !ok {
			fmt.Printf("%s: malformed step\n", step)
			os.Exit(2)
		}
		var err error
		switch op {
		case "copy":
			src, dst, _ := strings.Cut(arg, ":")
			var b []byte
			if b, err = os.ReadFile(src); err == nil {
				err = os.WriteFile(dst, bytes.ToUpper(b), 0o644)
			}
		case "read":
			var b []byte
			if b, err = os.ReadFile(arg); err == nil {
				fmt.Printf("%s: content %q\n", step, b)
			}
		case "write":
			err = os.WriteFile(arg, []byte("x"), 0o644)
		case "open":
			var f *os.File
			if f, err = os.Open(arg); err == nil {
				f.Close()
			}
		case "connect":
			var c net.Conn
			if c, err = net.DialTimeout("tcp", arg, 2*time.Second); err == nil {
				c.Close()
			}
		case "exec":
			// Only returns on failure.
			err = syscall.Exec(arg, []string{arg}, nil)
		case "env":
			for _, kv := range os.Environ() {
				fmt.Printf("env %s\n", kv)
			}
		default:
			fmt.Printf("%s: unknown step\n", step)
			os.Exit(2)
		}
		if err != nil {
			fmt.Printf("%s: %v\n", step, err)
		} else {
			fmt.Printf("%s: ok\n", step)
		}
	}
}
