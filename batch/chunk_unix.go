//go:build unix

package batch

import (
	"syscall"
	"unsafe"
)

// mapChunk returns room for n records in memory mapped from the system
// rather than allocated on the heap, and the mapping to give unmapChunk;
// nil when mapping failed (the caller then allocates). The records hold no
// pointer, so the collector need not see them; kept out of the heap, they
// do not double the heap's goal, so a plan's records cost their own size
// in memory, not twice it.
func mapChunk(n int) ([]planRec, []byte) {
	size := n * int(unsafe.Sizeof(planRec{}))
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil
	}
	return unsafe.Slice((*planRec)(unsafe.Pointer(unsafe.SliceData(b))), n)[:0], b
}

// unmapChunk releases a mapping of mapChunk; no slice of it may be used
// afterwards.
func unmapChunk(b []byte) { _ = syscall.Munmap(b) }
