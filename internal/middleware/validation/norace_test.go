//go:build !race

package validation_test

// raceAllocs is what the race detector adds to an allocation count here.
const raceAllocs = 0
