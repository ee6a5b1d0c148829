package streamfeat

import (
	"context"
	"fmt"
	"runtime"
)

// Stats returns the statistics of one entity's feature over window w at the
// clock's now. An entity never seen, or idle for the whole window, has a zero
// Stats. The query waits behind the writes already queued to the entity's
// shard, so it sees every batch whose Ingest call returned before it began.
func (e *Engine) Stats(ctx context.Context, entityID string, featureID int32, w Window) (Stats, error) {
	if err := checkWindow(w); err != nil {
		return Stats{}, err
	}
	ws, err := e.entityWindows(ctx, entityID, featureID)
	if err != nil {
		return Stats{}, err
	}
	return ws.pick(w).stats(), nil
}

// Drift compares one entity's short window for a feature with its long
// window, as DriftOptions asks.
func (e *Engine) Drift(ctx context.Context, entityID string, featureID int32, opts DriftOptions) (DriftReport, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return DriftReport{}, err
	}
	ws, err := e.entityWindows(ctx, entityID, featureID)
	if err != nil {
		return DriftReport{}, err
	}
	return drift(ws, opts), nil
}

// PopulationStats returns the statistics of a feature over all entities
// together in window w.
func (e *Engine) PopulationStats(ctx context.Context, featureID int32, w Window) (Stats, error) {
	if err := checkWindow(w); err != nil {
		return Stats{}, err
	}
	ws, err := e.popWindows(ctx, featureID)
	if err != nil {
		return Stats{}, err
	}
	return ws.pick(w).stats(), nil
}

// PopulationDrift is Drift over all entities together.
func (e *Engine) PopulationDrift(ctx context.Context, featureID int32, opts DriftOptions) (DriftReport, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return DriftReport{}, err
	}
	ws, err := e.popWindows(ctx, featureID)
	if err != nil {
		return DriftReport{}, err
	}
	return drift(ws, opts), nil
}

// entityWindows asks the entity's shard for its windows of a feature.
func (e *Engine) entityWindows(ctx context.Context, entityID string, featureID int32) (windowSet, error) {
	if err := checkEntity(entityID); err != nil {
		return windowSet{}, err
	}
	if err := e.checkFeatureID(featureID); err != nil {
		return windowSet{}, err
	}
	nowMs := e.nowMs()
	parts, err := e.onShards(ctx, []int{e.shardOf(entityID)}, func(s *shard) windowSet {
		return s.entityWindows(entityID, featureID, nowMs)
	})
	if err != nil {
		return windowSet{}, err
	}
	return parts[0], nil
}

// popWindows asks every shard for its population windows of a feature and
// merges them in shard order, so that equal states give equal bits.
func (e *Engine) popWindows(ctx context.Context, featureID int32) (windowSet, error) {
	if err := e.checkFeatureID(featureID); err != nil {
		return windowSet{}, err
	}
	nowMs := e.nowMs()
	all := make([]int, len(e.shards))
	for i := range all {
		all[i] = i
	}
	parts, err := e.onShards(ctx, all, func(s *shard) windowSet {
		return s.popWindows(featureID, nowMs)
	})
	if err != nil {
		return windowSet{}, err
	}
	var ws windowSet
	for _, p := range parts {
		ws.short.add(p.short)
		ws.baseline.add(p.baseline)
	}
	ws.long = ws.short
	ws.long.add(ws.baseline)
	return ws, nil
}

// shardReply carries one shard's answer back to onShards.
type shardReply struct {
	i  int
	ws windowSet
}

// onShards runs fn on the owner goroutine of each listed shard, behind the
// messages already queued there, and returns the answers in the order of
// ids, or ctx's error. Answers travel over a channel buffered for all of
// them, so a shard that answers after the caller gave up neither blocks nor
// writes into memory the caller still reads.
func (e *Engine) onShards(ctx context.Context, ids []int, fn func(*shard) windowSet) ([]windowSet, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	replies := make(chan shardReply, len(ids))
	// Owners that poll beyond the number of CPUs only take turns with each
	// other and with this goroutine, which still has shards to ask: a query
	// of many shards leaves them to park.
	ownersPoll := e.cfg.IdleSpin
	if len(ids) > runtime.GOMAXPROCS(0) {
		ownersPoll = 0
	}
	sent := 0
	for i, id := range ids {
		m := &message{run: func(s *shard) { replies <- shardReply{i, fn(s)} }, poll: ownersPoll}
		select {
		case e.shards[id].queue <- m:
			sent++
		case <-ctx.Done():
		}
		if sent <= i {
			break
		}
	}
	e.leave()
	if sent < len(ids) {
		return nil, fmt.Errorf("streamfeat: query: %w", ctx.Err())
	}

	out := make([]windowSet, len(ids))
	for range sent {
		r, ok := poll(replies, e.cfg.IdleSpin)
		if !ok {
			select {
			case r = <-replies:
			case <-ctx.Done():
				return nil, fmt.Errorf("streamfeat: query: %w", ctx.Err())
			}
		}
		out[r.i] = r.ws
	}
	return out, nil
}

func checkWindow(w Window) error {
	if w != Short && w != Long {
		return fmt.Errorf("%w: %d: want Short or Long", ErrInvalidWindow, w)
	}
	return nil
}
