package arena

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"unsafe"
)

// Handle names a block: the index of its first element across all slabs.
// The zero Handle is nil.
type Handle uint32

// ErrFull is returned by Alloc when the arena's 32-bit handle space is spent.
var ErrFull = errors.New("arena: full")

// Arena hands out blocks of contiguous T from fixed-size slabs. See the
// package documentation for the trade-offs.
type Arena[T any] struct {
	slabShift uint
	slabMask  uint32
	classes   []int // ascending block sizes in elements

	slabs [][]T
	next  uint32     // global index of the first element never handed out
	free  [][]Handle // per class: blocks returned by Free
	inUse int        // elements in blocks handed out and not freed
}

// New returns an empty arena whose slabs hold slabLen elements (rounded up to
// a power of two) and whose blocks come in the given sizes. The largest class
// must fit in a slab.
func New[T any](slabLen int, classes []int) (*Arena[T], error) {
	if len(classes) == 0 || !slices.IsSorted(classes) || classes[0] < 1 {
		return nil, fmt.Errorf("arena: classes %v: want ascending sizes of at least 1", classes)
	}
	if slabLen < 2 || slabLen > 1<<24 {
		return nil, fmt.Errorf("arena: slab length %d: want 2 to %d", slabLen, 1<<24)
	}
	shift := uint(bits.Len(uint(slabLen - 1)))
	if max := classes[len(classes)-1]; max > 1<<shift {
		return nil, fmt.Errorf("arena: class %d does not fit a slab of %d", max, 1<<shift)
	}
	return &Arena[T]{
		slabShift: shift,
		slabMask:  1<<shift - 1,
		classes:   slices.Clone(classes),
		free:      make([][]Handle, len(classes)),
		next:      1, // element 0 stays unused so that Handle 0 is nil
	}, nil
}

// Classes returns the number of size classes.
func (a *Arena[T]) Classes() int { return len(a.classes) }

// ClassSize returns the number of elements in a block of class c.
func (a *Arena[T]) ClassSize(c int) int { return a.classes[c] }

// ClassFor returns the smallest class whose blocks hold n elements, or -1
// when n is larger than the largest class.
func (a *Arena[T]) ClassFor(n int) int {
	for c, size := range a.classes {
		if size >= n {
			return c
		}
	}
	return -1
}

// Alloc returns a block of class c. Its contents are whatever it held before:
// callers initialise what they use.
func (a *Arena[T]) Alloc(c int) (Handle, error) {
	size := a.classes[c]
	if fl := a.free[c]; len(fl) > 0 {
		h := fl[len(fl)-1]
		a.free[c] = fl[:len(fl)-1]
		a.inUse += size
		return h, nil
	}

	if len(a.slabs) == 0 {
		if err := a.grow(); err != nil {
			return 0, err
		}
	}
	slabLen := uint32(1) << a.slabShift
	if off := a.next & a.slabMask; off != 0 && uint32(size) > slabLen-off {
		a.recycleTail(slabLen - off)
	}
	if a.next&a.slabMask == 0 {
		if err := a.grow(); err != nil {
			return 0, err
		}
	}
	h := Handle(a.next)
	a.next += uint32(size)
	a.inUse += size
	return h, nil
}

// grow adds the slab that a.next points into.
func (a *Arena[T]) grow() error {
	idx := uint64(len(a.slabs))
	if (idx+1)<<a.slabShift > math.MaxUint32 {
		return ErrFull
	}
	a.slabs = append(a.slabs, make([]T, 1<<a.slabShift))
	return nil
}

// recycleTail cuts the unused tail of the newest slab into free blocks of the
// largest classes that fit, so that moving to a new slab wastes nothing.
func (a *Arena[T]) recycleTail(rest uint32) {
	for c := len(a.classes) - 1; c >= 0 && rest > 0; c-- {
		size := uint32(a.classes[c])
		for rest >= size {
			a.free[c] = append(a.free[c], Handle(a.next))
			a.next += size
			rest -= size
		}
	}
	a.next += rest // smaller than the smallest class: skipped
}

// Free returns block h of class c for reuse. Freeing a block twice, or with
// the wrong class, corrupts the arena.
func (a *Arena[T]) Free(h Handle, c int) {
	a.free[c] = append(a.free[c], h)
	a.inUse -= a.classes[c]
}

// Block returns the elements of block h of class c. The slice aliases the
// slab: it stays valid until the block is freed or the arena is reset.
func (a *Arena[T]) Block(h Handle, c int) []T {
	slab := a.slabs[uint32(h)>>a.slabShift]
	off := uint32(h) & a.slabMask
	return slab[off : off+uint32(a.classes[c]) : off+uint32(a.classes[c])]
}

// Reset drops every slab and block at once; outstanding handles become
// invalid.
func (a *Arena[T]) Reset() {
	a.slabs = nil
	a.next = 1
	a.inUse = 0
	for c := range a.free {
		a.free[c] = nil
	}
}

// Stats describes an arena's memory.
type Stats struct {
	Slabs      int   // slabs allocated
	Bytes      int64 // bytes held in slabs
	InUseBytes int64 // bytes in blocks handed out and not freed
	FreeBlocks int   // blocks waiting on free lists
}

// Stats returns the arena's memory figures.
func (a *Arena[T]) Stats() Stats {
	var zero T
	elem := int64(unsafe.Sizeof(zero))
	st := Stats{
		Slabs:      len(a.slabs),
		Bytes:      int64(len(a.slabs)) << a.slabShift * elem,
		InUseBytes: int64(a.inUse) * elem,
	}
	for _, fl := range a.free {
		st.FreeBlocks += len(fl)
	}
	return st
}
