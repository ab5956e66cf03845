package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/podfim/podfim/internal/baseline"
)

// Exit statuses. 0-7 is the check bitmask (1 added, 2 removed, 4 changed,
// ORed, like AIDE's); 8 is a check that found no difference in what it
// compared but could not compare everything (never ORed: 8|7 would be 15,
// ExitUsage); errors start at 14. docs/cli.md lists them and must change
// with them.
const (
	ExitOK          = 0
	ExitAdded       = 1
	ExitRemoved     = 2
	ExitChanged     = 4
	ExitIncomplete  = 8   // no difference found, but part of the tree was not compared (see the warnings)
	ExitError       = 14  // unexpected internal error
	ExitUsage       = 15  // invalid flags or arguments
	ExitPolicy      = 16  // the policy file is unreadable or invalid
	ExitScan        = 17  // the tree could not be scanned (root missing or unreadable, limits.maxFiles exceeded)
	ExitIO          = 18  // a file could not be read or written (baseline missing, disk full, key unreadable)
	ExitVersion     = 19  // the baseline was written by a newer podfim
	ExitCorrupt     = 20  // the baseline is corrupt, truncated or fails its digest
	ExitSignature   = 21  // the signature is missing, forged or made with another key
	ExitBinding     = 22  // an authentic baseline for another subject or image, too old, or rolled back
	ExitInterrupted = 130 // SIGINT or SIGTERM before the command finished
)

// exitError carries the exit status of a failed command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// fail wraps err with an exit status; nil stays nil.
func fail(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func failf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// baselineReadError maps a failure to read a baseline to its exit status.
func baselineReadError(err error) error {
	switch {
	case errors.Is(err, baseline.ErrVersion):
		return fail(ExitVersion, err)
	case errors.Is(err, baseline.ErrSignature):
		return fail(ExitSignature, err)
	case errors.Is(err, baseline.ErrBinding):
		return fail(ExitBinding, err)
	case errors.Is(err, baseline.ErrFormat), errors.Is(err, baseline.ErrDigest):
		return fail(ExitCorrupt, err)
	}
	return fail(ExitIO, err)
}

// scanError maps a scan failure (a missing or unreadable root, or
// scan.ErrLimit) to its exit status.
func scanError(err error) error {
	if errors.Is(err, context.Canceled) {
		return fail(ExitInterrupted, err)
	}
	return fail(ExitScan, err)
}

// ExitCode returns the exit status for the error a command returned.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	// Errors that are not ours come from cobra's flag and argument parsing.
	return ExitUsage
}

// checkStatus is returned by check when it found differences: it is not a
// failure to report, only an exit status.
type checkStatus int

func (c checkStatus) Error() string { return fmt.Sprintf("differences found (exit %d)", int(c)) }
