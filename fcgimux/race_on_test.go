//go:build race

package fcgimux

// raceAllocSlack widens allocBound under the race detector, whose
// instrumented runtime allocates more per goroutine and per channel
// operation: a server test then measured 4.4 MB against a 4 MiB bound
// in some runs, still far under the 16 MiB to 2 GiB the inputs claim.
const raceAllocSlack = 2
