package arena

import (
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"
)

func mustNew[T any](t testing.TB, slabLen int, classes []int) *Arena[T] {
	t.Helper()
	a, err := New[T](slabLen, classes)
	if err != nil {
		t.Fatalf("New(%d, %v): %v", slabLen, classes, err)
	}
	return a
}

func TestNewRejectsBadArguments(t *testing.T) {
	cases := []struct {
		slabLen int
		classes []int
	}{
		{16, nil},
		{16, []int{}},
		{16, []int{0, 4}},
		{16, []int{-1}},
		{16, []int{8, 4}},
		{1, []int{1}},
		{0, []int{1}},
		{-5, []int{1}},
		{1<<24 + 1, []int{1}},
		{16, []int{4, 17}}, // does not fit a slab
		{10, []int{17}},    // 10 rounds up to 16
	}
	for _, c := range cases {
		if a, err := New[int](c.slabLen, c.classes); err == nil || a != nil {
			t.Errorf("New(%d, %v) = %v, %v; want an error", c.slabLen, c.classes, a, err)
		}
	}
	// Rounded up: a slab of 10 holds a class of 16.
	a := mustNew[int](t, 10, []int{16})
	if h, err := a.Alloc(0); err != nil || len(a.Block(h, 0)) != 16 {
		t.Fatalf("class 16 in a slab of 10 (16): %v, %v", h, err)
	}
}

func TestClasses(t *testing.T) {
	a := mustNew[int](t, 64, []int{1, 4, 10, 64})
	if a.Classes() != 4 || a.ClassSize(2) != 10 {
		t.Fatalf("Classes %d, ClassSize(2) %d", a.Classes(), a.ClassSize(2))
	}
	for n, want := range map[int]int{0: 0, 1: 0, 2: 1, 4: 1, 5: 2, 10: 2, 11: 3, 64: 3, 65: -1} {
		if got := a.ClassFor(n); got != want {
			t.Errorf("ClassFor(%d) = %d; want %d", n, got, want)
		}
	}
}

func TestAllocFreeReuse(t *testing.T) {
	a := mustNew[uint64](t, 64, []int{2, 8})
	h1, _ := a.Alloc(0)
	h2, _ := a.Alloc(1)
	if h1 == 0 || h2 == 0 || h1 == h2 {
		t.Fatalf("handles %d, %d", h1, h2)
	}
	b1 := a.Block(h1, 0)
	b1[0], b1[1] = 11, 12
	a.Free(h1, 0)
	// The next block of class 0 is the freed one; class 1 does not take it.
	h3, _ := a.Alloc(1)
	if h3 == h1 {
		t.Fatalf("class 1 reused a class 0 block")
	}
	h4, _ := a.Alloc(0)
	if h4 != h1 {
		t.Fatalf("class 0 got %d; want the freed %d", h4, h1)
	}
	// Alloc does not clear: the old contents are still there.
	if b := a.Block(h4, 0); b[0] != 11 || b[1] != 12 {
		t.Fatalf("reused block holds %v", b)
	}
	st := a.Stats()
	if st.InUseBytes != (2+8+8)*8 || st.FreeBlocks != 0 || st.Slabs != 1 || st.Bytes != 64*8 {
		t.Fatalf("stats %+v", st)
	}
	// Blocks have the class's length and capacity, so append cannot run
	// into a neighbour.
	if b := a.Block(h2, 1); len(b) != 8 || cap(b) != 8 {
		t.Fatalf("block len %d cap %d; want 8, 8", len(b), cap(b))
	}
}

// TestTailRecycling allocates a class that does not fit the rest of a slab:
// the rest is cut into free blocks of the classes that fit, and the new block
// starts the next slab.
func TestTailRecycling(t *testing.T) {
	a := mustNew[byte](t, 16, []int{1, 2, 4, 8})
	h, _ := a.Alloc(3) // elements 1..8
	if h != 1 {
		t.Fatalf("first block at %d; want 1", h)
	}
	// 7 elements left in slab 0 (9..15): a class-3 block does not fit.
	h2, _ := a.Alloc(3)
	if h2 != 16 {
		t.Fatalf("second block at %d; want 16, the next slab", h2)
	}
	st := a.Stats()
	if st.Slabs != 2 || st.FreeBlocks != 3 { // 4 + 2 + 1
		t.Fatalf("stats %+v; want 2 slabs and the tail cut into 3 free blocks", st)
	}
	// The tail's blocks serve the next small allocations.
	want := map[int]Handle{2: 9, 1: 13, 0: 15}
	for c := 2; c >= 0; c-- {
		if got, _ := a.Alloc(c); got != want[c] {
			t.Errorf("class %d from the tail at %d; want %d", c, got, want[c])
		}
	}
	// A tail smaller than the smallest class is skipped.
	b := mustNew[byte](t, 8, []int{3})
	h1, _ := b.Alloc(0)  // 1..3
	h2b, _ := b.Alloc(0) // 4..6
	h3, _ := b.Alloc(0)  // 7 left: skipped, 8..10
	if h1 != 1 || h2b != 4 || h3 != 8 || b.Stats().FreeBlocks != 0 {
		t.Fatalf("blocks at %d, %d, %d; stats %+v", h1, h2b, h3, b.Stats())
	}
}

func TestReset(t *testing.T) {
	a := mustNew[int32](t, 32, []int{4, 32})
	for range 10 {
		a.Alloc(1)
	}
	h, _ := a.Alloc(0)
	a.Free(h, 0)
	a.Reset()
	if st := a.Stats(); st != (Stats{}) {
		t.Fatalf("stats after Reset: %+v", st)
	}
	if h, err := a.Alloc(0); err != nil || h != 1 {
		t.Fatalf("first Alloc after Reset: %d, %v; want 1", h, err)
	}
}

// TestFull spends the 32-bit handle space. Elements of size zero make the
// slabs free, so this costs no memory.
func TestFull(t *testing.T) {
	a := mustNew[struct{}](t, 1<<24, []int{1 << 24})
	n := 0
	for {
		h, err := a.Alloc(0)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil || h == 0 {
			t.Fatalf("Alloc %d: %d, %v", n, h, err)
		}
		n++
		if n > 256 {
			t.Fatal("no ErrFull after 256 slabs")
		}
	}
	// Slab 0 loses its first element to the nil handle; slabs 1..254 fit
	// below 2^32.
	if n != 254 {
		t.Fatalf("%d blocks before ErrFull; want 254", n)
	}
	// A freed block can still be handed out after ErrFull.
	a.Free(1<<24, 0)
	if h, err := a.Alloc(0); err != nil || h != 1<<24 {
		t.Fatalf("Alloc after Free at full: %d, %v", h, err)
	}
}

// model is the reference for randomized runs: the live blocks and what was
// written into them.
type model struct {
	live map[Handle]liveBlock
}

type liveBlock struct {
	class int
	stamp uint64
}

// exercise runs ops against a and the model, checking after each step that
// no two live blocks overlap, that Handle 0 never appears, that every live
// block still holds what was written, and that Stats agree.
func exercise(t testing.TB, a *Arena[uint64], ops []byte) {
	m := model{live: map[Handle]liveBlock{}}
	var order []Handle
	owner := map[uint64]Handle{} // element address -> block, for overlap checks
	stamp := uint64(1)
	for i, op := range ops {
		if op%3 != 0 || len(order) == 0 {
			c := int(op) % a.Classes()
			h, err := a.Alloc(c)
			if err != nil {
				t.Fatalf("op %d: Alloc(%d): %v", i, c, err)
			}
			if h == 0 {
				t.Fatalf("op %d: Alloc returned Handle 0", i)
			}
			if _, dup := m.live[h]; dup {
				t.Fatalf("op %d: handle %d handed out twice", i, h)
			}
			blk := a.Block(h, c)
			for j := range blk {
				addr := uint64(uintptr(unsafe.Pointer(&blk[j])))
				if other, taken := owner[addr]; taken {
					t.Fatalf("op %d: block %d overlaps live block %d", i, h, other)
				}
				owner[addr] = h
				blk[j] = stamp
			}
			m.live[h] = liveBlock{c, stamp}
			order = append(order, h)
			stamp++
		} else {
			k := int(op/3) % len(order)
			h := order[k]
			order[k] = order[len(order)-1]
			order = order[:len(order)-1]
			lb := m.live[h]
			for j := range a.Block(h, lb.class) {
				delete(owner, uint64(uintptr(unsafe.Pointer(&a.Block(h, lb.class)[j]))))
			}
			a.Free(h, lb.class)
			delete(m.live, h)
		}
	}
	var inUse int64
	for h, lb := range m.live {
		for _, x := range a.Block(h, lb.class) {
			if x != lb.stamp {
				t.Fatalf("block %d holds %d; want %d: another block wrote over it", h, x, lb.stamp)
			}
		}
		inUse += int64(a.ClassSize(lb.class)) * 8
	}
	if st := a.Stats(); st.InUseBytes != inUse {
		t.Fatalf("stats %+v; want %d bytes in use", st, inUse)
	}
}

func TestRandomizedAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 20 {
		a := mustNew[uint64](t, 64, []int{1, 3, 8, 20, 64})
		ops := make([]byte, 2000)
		for i := range ops {
			ops[i] = byte(r.Uint32())
		}
		exercise(t, a, ops)
		if trial%5 == 0 {
			a.Reset()
			exercise(t, a, ops[:500])
		}
	}
}

func FuzzArena(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{4, 4, 4, 3, 3, 3, 0, 1, 2})
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, ops []byte) {
		a := mustNew[uint64](t, 32, []int{1, 2, 5, 16, 32})
		exercise(t, a, ops)
	})
}
