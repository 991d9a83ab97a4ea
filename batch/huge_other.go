//go:build unix && !linux

package batch

// adviseHuge does nothing where transparent huge pages cannot be asked for.
func adviseHuge([]byte) {}
