package main

import (
	"context"
	"errors"
	"io"
)

// TODO: replay is being written; this placeholder only keeps the build whole.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("replay: not built yet")
}
