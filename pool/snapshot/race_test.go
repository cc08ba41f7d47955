//go:build race

package snapshot_test

// raceEnabled reports a build with the race detector, whose instrumentation
// makes memory and time measurements meaningless.
const raceEnabled = true
