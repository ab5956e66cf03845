package baseline

import (
	"flag"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
)

// The sweeps of this package (every combination of attributes, every
// truncation of a file) run single-threaded, so the race detector can find
// nothing in them, yet it slows them ten times: compress/flate is
// instrumented too. Under -race or -short they take a sample, a different
// one each run (the seed is logged; PODFIM_SWEEP_SEED repeats it), and
// the plain `go test ./internal/baseline` still sweeps everything.

var sweepSeed = sync.OnceValue(func() uint64 {
	if s := os.Getenv("PODFIM_SWEEP_SEED"); s != "" {
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return v
		}
	}
	return rand.Uint64()
})

// sampled reports whether sweeps take a sample in this run.
func sampled() bool {
	return raceEnabled || (flag.Parsed() && testing.Short()) || os.Getenv("PODFIM_SWEEP_SAMPLE") != ""
}

// sampleOf returns the indexes in [0, n) a sweep visits: all of them, or
// under sampled() the first and last edge of them and one in every step of
// the rest, chosen at random.
func sampleOf(t testing.TB, n, edge, step int) []int {
	out := make([]int, 0, n)
	if !sampled() || n <= 2*edge {
		for i := range n {
			out = append(out, i)
		}
		return out
	}
	seed := sweepSeed()
	t.Logf("sampled sweep: %d edge indexes each end, 1 in %d between (PODFIM_SWEEP_SEED=%d repeats it)", edge, step, seed)
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := range n {
		if i < edge || i >= n-edge || rng.IntN(step) == 0 {
			out = append(out, i)
		}
	}
	return out
}
