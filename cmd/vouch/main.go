// Command vouch is the single binary of the vouch trust loop. Each
// sub-command lives in its own file and registers itself here; this package
// only parses flags and wires the library packages together.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"k8s.io/klog/v2"

	"github.com/vouch-dev/vouch/internal/gctune"
)

// command is one sub-command. run gets the arguments after the command's
// name and returns the process exit status.
type command struct {
	name    string // "log verify" for nested commands
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

func usage(w io.Writer) {
	fmt.Fprintln(w, "vouch — decentralized trust for build outputs")
	fmt.Fprintln(w, "\nusage: vouch COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'vouch COMMAND -h' for a command's flags.")
}

func main() {
	quietEngineLogs()
	gctune.Apply()
	os.Exit(dispatch(os.Args[1:]))
}

// quietEngineLogs keeps the log engine's informational chatter (klog) off
// the terminal; its errors still reach stderr. vouch reports what matters
// through its own structured logs.
func quietEngineLogs() {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	fs.Set("logtostderr", "false")
	fs.Set("stderrthreshold", "ERROR")
	klog.SetOutput(io.Discard)
}

func dispatch(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		return runVersion(nil)
	}
	// Nested commands ("log verify", "evidence export") take precedence.
	if len(args) >= 2 {
		if c, ok := commands[args[0]+" "+args[1]]; ok {
			return c.run(args[2:])
		}
	}
	if c, ok := commands[args[0]]; ok {
		return c.run(args[1:])
	}
	fmt.Fprintf(os.Stderr, "vouch: unknown command %q\n\n", strings.Join(args[:1], " "))
	usage(os.Stderr)
	return 2
}

// newFlags returns a FlagSet whose usage line names the command.
func newFlags(name, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet("vouch "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vouch %s [flags] %s\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// fail prints a one-line error for the user and returns exit status 1.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "vouch: "+format+"\n", args...)
	return 1
}
