//go:build race

package clustertest

// raceEnabled reports whether this test binary was built with -race; BuildGatehouse builds gatehouse the same way.
const raceEnabled = true
