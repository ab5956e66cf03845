//go:build race

package baseline

// raceEnabled loosens timing checks: the race detector slows code down
// several times.
const raceEnabled = true
