package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// envPrefix starts the name of the environment variable behind every flag.
const envPrefix = "STREAMFEAT_"

// envName returns the environment variable that sets the flag called name:
// "max-recv-bytes" is read from STREAMFEAT_MAX_RECV_BYTES.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag of fs whose environment variable is set and not
// empty. Call it before fs.Parse, so that a flag on the command line wins.
// A bad value is reported on stderr like a bad flag, as errUsage.
func applyEnv(fs *flag.FlagSet, lookupEnv func(string) (string, bool), stderr io.Writer) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			fmt.Fprintf(stderr, "invalid value %q for environment variable %s: %v\n", v, name, serr)
			fmt.Fprintf(stderr, "Run 'streamfeat %s -h' for help.\n", fs.Name())
			err = errUsage
		}
	})
	return err
}
