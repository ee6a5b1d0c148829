// Package arena allocates long-lived, pointer-free values in large slabs and
// names them by small integer handles instead of pointers.
//
// An Arena[T] owns a list of fixed-size slabs, each a []T of the same length.
// Callers ask for a block of n contiguous elements; the arena rounds n up to
// one of a few size classes, hands out a block from that class's free list or
// carves it from the newest slab, and returns a Handle, a 32-bit index of the
// block's first element. Handle zero is never a block, so a zero Handle reads
// as nil.
//
// Why: a shard of the engine keeps millions of small per-entity arrays alive
// for an hour or more. As separate heap objects they cost the garbage
// collector a mark for every one on every cycle, a header each, and pointers
// in every parent. In slabs of a pointer-free T the collector sees a few
// hundred large objects it never has to scan, and a handle costs four bytes
// where a slice header costs twenty-four.
//
// The price is manual lifetime: a freed block is reused by the next Alloc of
// its class, so a stale handle reads someone else's data. Memory only returns
// to the Go heap when the whole arena is dropped or Reset; callers that shrink
// copy their live blocks into a fresh arena (compaction) and drop the old one.
//
// An Arena is not safe for concurrent use; in streamfeat each shard's owner
// goroutine has its own.
package arena
