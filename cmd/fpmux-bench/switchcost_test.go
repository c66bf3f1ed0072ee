package main

import (
	"math"
	"testing"
	"time"
)

func TestCycleMemory(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// every 500 ms over [0, 5000): 2 cycles of 2.5 s
	series := func(kb func(ms int) uint64) []pssSample {
		var s []pssSample
		for ms := 0; ms < 5000; ms += 500 {
			s = append(s, pssSample{at(ms), kb(ms)})
		}
		return s
	}
	for _, tc := range []struct {
		name       string
		samples    []pssSample
		wantRatios []float64
		wantSteady float64
	}{
		{"one pool all along", series(func(int) uint64 { return 100 }), []float64{1, 1}, 100},
		{"two pools for the first of five samples", series(func(ms int) uint64 {
			if ms%2500 == 0 {
				return 200
			}
			return 100
		}), []float64{1.2, 1.2}, 100},
		{"steady is each cycle's own", series(func(ms int) uint64 {
			if ms < 2500 {
				return 100
			}
			return 50
		}), []float64{1, 1}, 75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ratios, steady := cycleMemory(tc.samples, []time.Time{at(0), at(2500)}, at(5000))
			if len(ratios) != len(tc.wantRatios) {
				t.Fatalf("ratios %v, want %v", ratios, tc.wantRatios)
			}
			for i := range ratios {
				if math.Abs(ratios[i]-tc.wantRatios[i]) > 1e-9 {
					t.Fatalf("ratios %v, want %v", ratios, tc.wantRatios)
				}
			}
			if steady != tc.wantSteady {
				t.Errorf("steady %v, want %v", steady, tc.wantSteady)
			}
		})
	}
}
