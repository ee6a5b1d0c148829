package main

import (
	"context"
	"errors"
	"io"
)

// TODO: serve is being written; this placeholder only keeps the build whole.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("serve: not built yet")
}
