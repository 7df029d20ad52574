// Command vouch is the single binary of the vouch trust loop. Each
// sub-command lives in its own file and registers itself here; this package
// only parses flags and wires the library packages together.
package main

import (
	"errors"
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
	fmt.Fprintln(w, "\nRun 'vouch COMMAND -h' or 'vouch help COMMAND' for a command's flags; flags may come before or after its arguments.")
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
	if len(args) == 0 || len(args) == 1 && (isHelp(args[0]) || args[0] == "help") {
		usage(os.Stdout)
		return 0
	}
	if args[0] == "help" { // vouch help COMMAND [SUBCOMMAND]
		return dispatch(append(append([]string{}, args[1:]...), "-h"))
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
	subs := subcommands(args[0])
	if c, ok := commands[args[0]]; ok {
		status := c.run(args[1:])
		if len(subs) > 0 && len(args) > 1 && isHelp(args[1]) {
			groupUsage(os.Stdout, args[0], subs)
		}
		return status
	}
	if len(subs) > 0 { // a group: vouch log, vouch log -h
		if len(args) > 1 && isHelp(args[1]) {
			groupUsage(os.Stdout, args[0], subs)
			return 0
		}
		if len(args) > 1 {
			fmt.Fprintf(os.Stderr, "vouch: unknown command %q\n\n", args[0]+" "+args[1])
		}
		groupUsage(os.Stderr, args[0], subs)
		return 2
	}
	fmt.Fprintf(os.Stderr, "vouch: unknown command %q\n\n", strings.Join(args[:1], " "))
	usage(os.Stderr)
	return 2
}

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "-help" }

// subcommands returns the registered commands nested under group, sorted.
func subcommands(group string) []string {
	var subs []string
	for n := range commands {
		if strings.HasPrefix(n, group+" ") {
			subs = append(subs, n)
		}
	}
	sort.Strings(subs)
	return subs
}

func groupUsage(w io.Writer, group string, subs []string) {
	fmt.Fprintf(w, "\nvouch %s has sub-commands:\n", group)
	for _, n := range subs {
		fmt.Fprintf(w, "  %-20s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'vouch %s SUBCOMMAND -h' (or 'vouch help %s SUBCOMMAND') for its flags.\n", group, group)
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

// parseInterspersed parses flags that may come before or after the
// positional arguments ("vouch promote IMAGE --tag stable"), which the
// flag package alone stops at. Afterwards fs.Args() are the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// parseFlags parses a command's arguments, its flags before or after the
// positional ones. It returns ok, or the exit status the command should
// return: 0 after -h/--help printed the usage (asking for help is not an
// error), 2 for a bad flag (the flag package has said which).
func parseFlags(fs *flag.FlagSet, args []string) (status int, ok bool) {
	err := parseInterspersed(fs, args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	}
	return 2, false
}

// fail prints a one-line error for the user and returns exit status 1.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "vouch: "+format+"\n", args...)
	return 1
}
