// Command streamfeat serves the streamfeat engine over gRPC, replays feature
// logs through it, and generates load against a server.
//
//	streamfeat serve  [flags]          run the gRPC server
//	streamfeat replay [flags] FILE...  replay a CSV, NDJSON or Parquet log
//	streamfeat load   [flags]          send synthetic load to a server
//
// Run "streamfeat COMMAND -h" for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand. Its context ends on SIGINT or SIGTERM.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"serve", "run the gRPC server", runServe},
	{"replay", "replay a feature log (CSV, NDJSON, Parquet) and report drift", runReplay},
	{"load", "send seeded synthetic load to a server", runLoad},
}

// run dispatches to a subcommand and returns the process exit code: 0 on
// success, 2 for a usage error, 1 for any other failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "streamfeat %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "streamfeat: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// errUsage marks an error whose message the flag package already printed.
var errUsage = errors.New("usage error")

func usage(w io.Writer) {
	fmt.Fprintln(w, "streamfeat keeps rolling per-entity feature statistics and detects drift.")
	fmt.Fprintln(w, "\nUsage:\n  streamfeat COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'streamfeat COMMAND -h' for a command's flags.")
}
