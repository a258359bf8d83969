// Command wsfleet is the ws node, the rollout engine, the local cloud and the
// demo in one binary. Each subcommand lives in its own file and registers
// itself in commands, so that adding one touches no other file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand.
type command struct {
	summary string
	// example is one or more command lines, one a line, that `-h` shows
	// under the flags.
	example string
	// run parses args (without the subcommand name) and runs. Before it
	// does anything else it defines its flags on a set from newFlagSet
	// and calls parseFlags: that is where commandFlags stops it to read
	// the flag set (for shell completion) without running it.
	// stdout and stderr are the process's unless a test substitutes them.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// register adds a subcommand; it is called from init in each file.
// example is what `wsfleet NAME -h` shows as examples, one command line a
// line.
func register(name, summary, example string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	if _, dup := commands[name]; dup {
		panic("wsfleet: subcommand registered twice: " + name)
	}
	commands[name] = command{summary: summary, example: example, run: run}
}

// errUsage marks an error the user fixes by changing the command line; it
// exits with status 2.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wsfleet COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'wsfleet COMMAND -h' for a command's flags and examples, 'wsfleet --version' for the build")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "--version", "-version":
		args[0] = "version"
	case completeCommand:
		return runComplete(context.Background(), args[1:], stdout, completer{})
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "wsfleet: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "wsfleet %s: %v\n", args[0], err)
		return 2
	default:
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintf(stderr, "wsfleet %s: %s\n", args[0], ee.msg)
			}
			return ee.code
		}
		fmt.Fprintf(stderr, "wsfleet %s: %v\n", args[0], err)
		return 1
	}
}

// exitError asks for a specific exit status, e.g. a probe whose loss
// exceeded --max-loss.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// newFlagSet returns a flag set that reports errors instead of exiting, so
// that run decides the exit status.
// name is the command, with its subcommand if it has one ("state
// push"); -h prints the command's summary, flags and examples.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("wsfleet "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { commandUsage(fs, name) }
	return fs
}

// commandUsage is a command's -h: how to call it, what it does, its flags
// and its examples.
func commandUsage(fs *flag.FlagSet, name string) {
	w := fs.Output()
	cmd := commands[strings.Fields(name)[0]]
	summary := cmd.summary
	if s, ok := subSummaries[name]; ok {
		summary = s
	}
	fmt.Fprintf(w, "usage: wsfleet %s [flags]\n\n%s\n", name, summary)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
	var examples []string
	for _, line := range strings.Split(strings.TrimSpace(cmd.example), "\n") {
		if line = strings.TrimSpace(line); line != "" && exampleOf(line, name) {
			examples = append(examples, line)
		}
	}
	if len(examples) > 0 {
		fmt.Fprintln(w, "\nexamples:")
		for _, line := range examples {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}

// subSummaries is what a command's subcommand does, for its -h: the
// command's own summary would describe the parent ("bench" is the
// servers side by side, "bench soak" one long run).
var subSummaries = map[string]string{
	"bench takeover": "benchmark take-overs: clients moved by a real drain from one node into another, per second and per core, with the gaps they see, against fresh handshakes",
	"bench soak":     "hold 10,000 sessions on a ws node with churn and fan-out for a long run, and fail unless RSS and goroutines stay flat and nothing failed",
}

// exampleOf reports whether an example line belongs to command name: a
// subcommand's -h shows its own examples, the command's shows those of
// no subcommand.
func exampleOf(line, name string) bool {
	f := strings.Fields(strings.TrimPrefix(line, "wsfleet "))
	parts := strings.Fields(name)
	if len(parts) > 1 {
		return len(f) > 1 && f[1] == parts[1]
	}
	if len(f) > 1 {
		for sub := range subSummaries {
			if sub == name+" "+f[1] {
				return false
			}
		}
	}
	return true
}

// parseFlags parses args and wraps a parse error as a usage error. For a
// flag set made by commandFlags it parses nothing: it hands the set over
// and stops the command (errDescribed).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if d, ok := fs.Output().(*flagDescriber); ok {
		d.fs = fs
		return errDescribed
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
