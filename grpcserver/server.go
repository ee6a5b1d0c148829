package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/streamfeat/streamfeat"
	streamfeatv1 "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
)

// Defaults for the zero fields of a Config.
const (
	// DefaultMaxRecvMsgBytes admits a single-feature batch of about two
	// million events (some 26 bytes each on the wire), well past the
	// 300,000-event backfill batches the server is sized for. gRPC's own
	// default of 4 MiB holds only about 150,000.
	DefaultMaxRecvMsgBytes = 64 << 20

	// DefaultMaxBatchEvents bounds the events in one IngestBatch call. A
	// decoded event costs a few hundred bytes of heap until the call returns,
	// so this caps one call's transient memory at roughly 100 MiB.
	DefaultMaxBatchEvents = 500_000

	// DefaultDrainTimeout is how long Shutdown waits for running RPCs.
	DefaultDrainTimeout = 10 * time.Second
)

// ErrDrainTimeout is returned by Shutdown when RPCs were still running at
// the end of the drain time and had to be cancelled.
var ErrDrainTimeout = errors.New("grpcserver: drain time ran out")

// Config sets up a Server. The zero value of every field means its default.
type Config struct {
	// MaxRecvMsgBytes is the largest request the server decodes. A larger
	// one fails with RESOURCE_EXHAUSTED before it reaches a handler.
	// Default DefaultMaxRecvMsgBytes (64 MiB).
	MaxRecvMsgBytes int

	// MaxBatchEvents is the most events one IngestBatch call may carry; a
	// larger batch fails whole with INVALID_ARGUMENT. Default
	// DefaultMaxBatchEvents (500,000).
	MaxBatchEvents int

	// DrainTimeout bounds how long Shutdown lets running RPCs finish before
	// it cancels them. Default DefaultDrainTimeout (10s).
	DrainTimeout time.Duration

	// UnaryInterceptors and StreamInterceptors wrap every RPC, health checks
	// and reflection included, the first outermost: the place for metrics
	// such as those of package promexport. Default none.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
}

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.MaxRecvMsgBytes < 0:
		return c, fmt.Errorf("grpcserver: max receive size %d: must not be negative", c.MaxRecvMsgBytes)
	case c.MaxBatchEvents < 0:
		return c, fmt.Errorf("grpcserver: max batch events %d: must not be negative", c.MaxBatchEvents)
	case c.DrainTimeout < 0:
		return c, fmt.Errorf("grpcserver: drain timeout %v: must not be negative", c.DrainTimeout)
	}
	if c.MaxRecvMsgBytes == 0 {
		c.MaxRecvMsgBytes = DefaultMaxRecvMsgBytes
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	return c, nil
}

// Server serves one engine over gRPC. Its methods are safe for concurrent
// use.
type Server struct {
	engine *streamfeat.Engine
	cfg    Config
	grpc   *grpc.Server
	health *health.Server

	shutdownOnce sync.Once
	shutdownDone chan struct{} // closed when the first Shutdown has finished
	shutdownErr  error         // written once, before shutdownDone closes
}

// New returns a Server for engine, which it takes ownership of: Shutdown
// closes the engine. The server accepts no connection until Serve.
func New(engine *streamfeat.Engine, cfg Config) (*Server, error) {
	if engine == nil {
		return nil, errors.New("grpcserver: nil engine")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}

	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.ChainUnaryInterceptor(cfg.UnaryInterceptors...),
		grpc.ChainStreamInterceptor(cfg.StreamInterceptors...),
		grpc.ForceServerCodecV2(newRequestCodec()),
	)
	s := &Server{
		engine:       engine,
		cfg:          cfg,
		grpc:         gs,
		health:       health.NewServer(),
		shutdownDone: make(chan struct{}),
	}
	s.grpc.RegisterService(withDecodeErrors(streamfeatv1.StreamFeat_ServiceDesc),
		&service{engine: engine, cfg: cfg})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	// The empty name is the whole server, the one probes ask about by default.
	for _, name := range []string{"", streamfeatv1.StreamFeat_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	return s, nil
}

// Config returns the settings in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Serve accepts connections on lis until Shutdown, and then returns nil. It
// returns an error if lis fails, or grpc.ErrServerStopped if Shutdown came
// first. lis is closed when Serve returns.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil {
		return fmt.Errorf("grpcserver: serve on %v: %w", lis.Addr(), err)
	}
	return nil
}

// Shutdown stops the server and closes the engine, in the order the package
// documentation describes, and returns once both are done. It returns an
// error wrapping ErrDrainTimeout when RPCs had to be cancelled at the end of
// the drain time, or ctx's error when ctx ended first; the engine is closed
// either way, so no acknowledged event is lost. Later calls wait for the
// first and return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.shutdownErr = s.shutdown(ctx)
		close(s.shutdownDone)
	})
	<-s.shutdownDone
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	// Tell probes and load balancers first, while RPCs are still served.
	s.health.Shutdown()

	// Drain: no new RPCs, running ones finish, within the drain time.
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.cfg.DrainTimeout)
	defer timer.Stop()

	var drainErr error
	select {
	case <-stopped:
	case <-timer.C:
		drainErr = fmt.Errorf("%w after %v; cancelled the RPCs still running",
			ErrDrainTimeout, s.cfg.DrainTimeout)
	case <-ctx.Done():
		drainErr = fmt.Errorf("grpcserver: shutdown: %w", ctx.Err())
	}

	// Stop cancels whatever is left; after a clean drain it does nothing.
	// GracefulStop returns only once every handler has, so once stopped is
	// closed no handler can touch the engine any more.
	s.grpc.Stop()
	<-stopped

	// Applies every batch still queued.
	if err := s.engine.Close(); err != nil && !errors.Is(err, streamfeat.ErrClosed) {
		return errors.Join(drainErr, fmt.Errorf("grpcserver: close engine: %w", err))
	}
	return drainErr
}
