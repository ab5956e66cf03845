// Package e2e holds podfim's end-to-end tests against real container
// runtimes. They are behind the build tag e2e and need root:
//
//	make e2e-podman    # go test -tags e2e -run Podman ./test/e2e/
//
// Helpers in helpers_test.go are runtime-neutral (commands, waiting, HTTP on
// loopback, the sidecar's JSON log, the repository's images and Pod YAML);
// each runtime has its own file (podman_test.go).
//
// The tests never skip: a runtime that cannot be installed or run is a
// failure. Traffic goes only to 127.0.0.1.
package e2e
