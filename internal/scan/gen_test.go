package scan

import (
	"os"
	"testing"
)

// TestGenerateBenchTree writes the benchmark tree to $PODFIM_GEN_TREE, once,
// for manual timing with PODFIM_BENCH_TREE; without the variable it checks
// the generator on a tiny tree.
func TestGenerateBenchTree(t *testing.T) {
	dir := os.Getenv("PODFIM_GEN_TREE")
	if dir == "" {
		makeBenchTree(t, t.TempDir(), 3, 3, 1, 1<<10)
		return
	}
	makeBenchTree(t, dir, 1000, 100, 20, 16<<20)
}
