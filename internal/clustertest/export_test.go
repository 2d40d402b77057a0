package clustertest

// RaceEnabled lets the external tests check that BuildGatehouse follows the test binary's -race.
const RaceEnabled = raceEnabled
