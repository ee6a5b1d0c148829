package main

import (
	"context"
	"errors"
	"io"
)

// TODO: load is being written; this placeholder only keeps the build whole.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("load: not built yet")
}
