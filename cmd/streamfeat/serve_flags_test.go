package main

import (
	"io"
	"testing"
	"time"

	"github.com/streamfeat/streamfeat"
)

// TestIdleSpinFlag: --idle-spin 0 turns polling off, where the engine's own
// Config reads 0 as its default; the environment works like the flag.
func TestIdleSpinFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, streamfeat.DefaultIdleSpin},
		{[]string{"--idle-spin", "0"}, nil, -1},
		{[]string{"--idle-spin", "-1ns"}, nil, -1},
		{[]string{"--idle-spin", "200us"}, nil, 200 * time.Microsecond},
		{nil, map[string]string{"STREAMFEAT_IDLE_SPIN": "0s"}, -1},
	} {
		cfg, err := parseServeFlags(tc.args, env(tc.env), io.Discard)
		if err != nil || cfg.engine.IdleSpin != tc.want {
			t.Errorf("%q %v: idle spin %v, %v; want %v", tc.args, tc.env, cfg.engine.IdleSpin, err, tc.want)
		}
	}
}
