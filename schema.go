package streamfeat

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// schema maps feature names to dense ids 1..n. Registration is rare and takes
// a mutex; the ingest path only reads n through an atomic.
type schema struct {
	n   atomic.Int32 // ids 1..n are registered
	max int

	mu    sync.Mutex
	ids   map[string]int32
	names []string // names[id-1]
}

// RegisterSchema registers feature names and returns the id of each. It is
// idempotent: a name registered before keeps its id, and a name repeated in
// the list gets one id. Ids are dense and start at 1; 0 is never a valid id.
// Names must be non-empty valid UTF-8 of at most MaxFeatureNameBytes bytes.
// A call that would take the schema past Config.MaxFeatures registers nothing.
func (e *Engine) RegisterSchema(names []string) (map[string]int32, error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no feature names given", ErrInvalidFeature)
	}
	for _, name := range names {
		if err := checkFeatureName(name); err != nil {
			return nil, err
		}
	}
	return e.schema.register(names)
}

func (s *schema) register(names []string) (map[string]int32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	fresh := 0
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if _, ok := s.ids[name]; !ok && !seen[name] {
			fresh++
		}
		seen[name] = true
	}
	if len(s.names)+fresh > s.max {
		return nil, fmt.Errorf("%w: %d registered and %d new, over the limit of %d",
			ErrTooManyFeatures, len(s.names), fresh, s.max)
	}

	if s.ids == nil {
		s.ids = make(map[string]int32)
	}
	out := make(map[string]int32, len(seen))
	for _, name := range names {
		id, ok := s.ids[name]
		if !ok {
			s.names = append(s.names, name)
			id = int32(len(s.names))
			s.ids[name] = id
		}
		out[name] = id
	}
	s.n.Store(int32(len(s.names)))
	return out, nil
}

// Schema returns every registered name with its id.
func (e *Engine) Schema() map[string]int32 {
	e.schema.mu.Lock()
	defer e.schema.mu.Unlock()
	return maps.Clone(e.schema.ids)
}

// FeatureName returns the name registered under id.
func (e *Engine) FeatureName(id int32) (string, error) {
	if err := e.checkFeatureID(id); err != nil {
		return "", err
	}
	e.schema.mu.Lock()
	defer e.schema.mu.Unlock()
	return e.schema.names[id-1], nil
}

// checkFeatureID tells an invalid id (below 1) from an unregistered one.
func (e *Engine) checkFeatureID(id int32) error {
	if id < 1 {
		return fmt.Errorf("%w: id %d: ids start at 1", ErrInvalidFeature, id)
	}
	if id > e.schema.n.Load() {
		return fmt.Errorf("%w: id %d", ErrUnknownFeature, id)
	}
	return nil
}

func checkFeatureName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidFeature)
	case len(name) > MaxFeatureNameBytes:
		return fmt.Errorf("%w: name of %d bytes, over the limit of %d",
			ErrInvalidFeature, len(name), MaxFeatureNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name %q is not valid UTF-8", ErrInvalidFeature, name)
	}
	return nil
}
