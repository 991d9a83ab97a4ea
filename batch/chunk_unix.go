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
	b, err := syscall.Mmap(-1, 0, n*int(unsafe.Sizeof(planRec{})), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil
	}
	return unsafe.Slice((*planRec)(unsafe.Pointer(unsafe.SliceData(b))), n)[:0], b
}

// unmapChunk releases a mapping of mapChunk; no slice of it may be used
// afterwards.
func unmapChunk(b []byte) { _ = syscall.Munmap(b) }

// hugePage is the size of a huge page on amd64 and arm64 Linux, to which
// mapBytes aligns and rounds its mappings.
const hugePage = 2 << 20

// mapBytes returns at least size zeroed bytes mapped from the system,
// outside the heap, for data that holds no pointer and is written all over
// (a hash table), and the mapping to give unmapBytes; nil when mapping
// failed. The bytes are aligned to hugePage and rounded up to a multiple of
// it, and the system is asked to back them with huge pages where it can
// (see adviseHuge): a table written at random costs a page fault per 4 KiB
// page otherwise, and a miss of the translation cache on most writes.
func mapBytes(size int) (data, mapping []byte) {
	size = (size + hugePage - 1) / hugePage * hugePage
	b, err := syscall.Mmap(-1, 0, size+hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil
	}
	skip := 0
	if rem := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % hugePage); rem != 0 {
		skip = hugePage - rem
	}
	data = b[skip : skip+size : skip+size]
	adviseHuge(data)
	return data, b
}

// unmapBytes releases a mapping of mapBytes; no slice of it may be used
// afterwards.
func unmapBytes(mapping []byte) { _ = syscall.Munmap(mapping) }
