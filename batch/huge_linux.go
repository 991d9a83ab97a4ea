package batch

import "syscall"

// adviseHuge asks Linux to back the mapping b with transparent huge pages
// (when the system enables them for those who ask). It is only advice: on
// failure b works as it is.
func adviseHuge(b []byte) { _ = syscall.Madvise(b, syscall.MADV_HUGEPAGE) }
