//go:build race

package ratelimit

// raceEnabled reports that the race detector is on: the slowest model
// runs are left out, as they take minutes under it.
const raceEnabled = true
