//go:build !unix

package batch

// mapChunk maps nothing where memory mapping is not available: the
// records are allocated on the heap.
func mapChunk(int) ([]planRec, []byte) { return nil, nil }

func unmapChunk([]byte) {}

// mapBytes maps nothing where memory mapping is not available: the caller
// allocates on the heap.
func mapBytes(int) (data, mapping []byte) { return nil, nil }

func unmapBytes([]byte) {}
