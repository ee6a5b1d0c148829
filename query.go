package streamfeat

import (
	"context"
	"fmt"
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
	var ws windowSet
	err := e.onShards(ctx, []int{e.shardOf(entityID)}, func(s *shard) {
		ws = s.entityWindows(entityID, featureID, nowMs)
	})
	return ws, err
}

// popWindows asks every shard for its population windows of a feature and
// merges them.
func (e *Engine) popWindows(ctx context.Context, featureID int32) (windowSet, error) {
	if err := e.checkFeatureID(featureID); err != nil {
		return windowSet{}, err
	}
	nowMs := e.nowMs()
	parts := make([]windowSet, len(e.shards))
	all := make([]int, len(e.shards))
	for i := range all {
		all[i] = i
	}
	err := e.onShards(ctx, all, func(s *shard) {
		parts[s.id] = s.popWindows(featureID, nowMs)
	})
	var ws windowSet
	for _, p := range parts {
		ws.short.add(p.short)
		ws.baseline.add(p.baseline)
	}
	ws.long = ws.short
	ws.long.add(ws.baseline)
	return ws, err
}

// onShards runs fn on the owner goroutine of each listed shard, behind the
// messages already queued there, and waits for all of them or for ctx.
func (e *Engine) onShards(ctx context.Context, ids []int, fn func(*shard)) error {
	if err := e.enter(); err != nil {
		return err
	}
	done := make(chan struct{}, len(ids))
	sent := 0
	for _, id := range ids {
		m := &message{run: func(s *shard) { fn(s); done <- struct{}{} }}
		select {
		case e.shards[id].queue <- m:
			sent++
		case <-ctx.Done():
		}
	}
	e.leave()

	for range sent {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("streamfeat: query: %w", ctx.Err())
		}
	}
	if sent < len(ids) {
		return fmt.Errorf("streamfeat: query: %w", ctx.Err())
	}
	return nil
}

func checkWindow(w Window) error {
	if w != Short && w != Long {
		return fmt.Errorf("%w: %d: want Short or Long", ErrInvalidWindow, w)
	}
	return nil
}
