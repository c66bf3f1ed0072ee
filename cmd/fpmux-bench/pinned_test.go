// Tests of the pinned section's pinning: setAffinity changes the mask of
// every thread of a process, and pinTrees reaches its descendants.

package main

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"unsafe"
)

// affinity returns the CPUs thread or process tid may run on.
func affinity(t *testing.T, tid int) []int {
	t.Helper()
	var set [16]uint64
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), unsafe.Sizeof(set), uintptr(unsafe.Pointer(&set)))
	if e != 0 {
		t.Fatalf("sched_getaffinity(%d): %v", tid, e)
	}
	var cpus []int
	for c := range 64 * len(set) {
		if set[c/64]&(1<<(c%64)) != 0 {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

func TestPinTrees(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	// A parent with a child: the child must be pinned too.
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Process.Kill()
		cmd.Wait()
	})
	var child int
	if err := waitFor(t.Context(), "sleep to start", 10e9, func() (bool, error) {
		for _, p := range descendants(cmd.Process.Pid) {
			child = p
			return true, nil
		}
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cpus []int
	}{
		{"one CPU", []int{1}},
		{"another", []int{0}},
		{"all", allCPUs()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := pinTrees([]int{cmd.Process.Pid}, tt.cpus); err != nil {
				t.Fatal(err)
			}
			for _, pid := range []int{cmd.Process.Pid, child} {
				if got := affinity(t, pid); !equalInts(got, tt.cpus) {
					t.Errorf("pid %d may run on %v, want %v", pid, got, tt.cpus)
				}
			}
		})
	}
	if err := setAffinity(os.Getpid()+1<<22, []int{0}); err == nil {
		t.Error("setAffinity of a pid that does not exist: no error")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCPUBound(t *testing.T) {
	sum := func(nginx, fpmux, php float64) summary {
		return summary{cpu: map[string]float64{"nginx": nginx, "fpmux": fpmux, "php-fpm": php}}
	}
	tests := []struct {
		name string
		d, f summary
		want float64
	}{
		{"hop free", sum(20, 0, 30), sum(20, 0, 30), 1},
		{"hop doubles the cost", sum(26, 0, 36), sum(26, 62, 36), 0.5},
		{"fpmux saves php-fpm what it costs", sum(20, 0, 40), sum(20, 10, 30), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuBound(tt.d, tt.f); got != tt.want {
				t.Errorf("cpuBound = %v, want %v", got, tt.want)
			}
		})
	}
}
