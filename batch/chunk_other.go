//go:build !unix

package batch

// mapChunk maps nothing where memory mapping is not available: the
// records are allocated on the heap.
func mapChunk(int) ([]planRec, []byte) { return nil, nil }

func unmapChunk([]byte) {}
