//go:build race

package sidecar_test

// raceEnabled: this test binary (and so the sidecar it runs) is built with
// the race detector.
const raceEnabled = true
