package main

import (
	"context"
	"net"
	"testing"

	"github.com/streamfeat/streamfeat"
	"github.com/streamfeat/streamfeat/grpcserver"
)

// startServer serves a new engine with cfg on a loopback port until the test
// ends, and returns the address and the engine.
func startServer(t *testing.T, cfg streamfeat.Config) (string, *streamfeat.Engine) {
	t.Helper()
	engine, err := streamfeat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcserver.New(engine, grpcserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String(), engine
}
