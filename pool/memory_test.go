package pool

import (
	"testing"
	"time"
)

// TestPoolMemory reads the memory of a running pool: every process of the
// group counted, PSS no more than RSS, both non-zero.
func TestPoolMemory(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "x";`})
	p := startPool(t, Options{ID: "mem1", Root: root, Dir: poolDir(t), Binary: bin, Logger: testLogger(t),
		Directives: map[string]string{"pm": "static", "pm.max_children": "3"}})
	// php-fpm binds the pool's socket before it forks the workers, so the
	// first one can answer the ping (and Start return) while the master
	// still forks the others: under load, 3 processes were seen once.
	var m Memory
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m, err = p.Memory(); err != nil {
			t.Fatal(err)
		}
		if m.Processes == 4 || time.Now().After(deadline) {
			break
		}
	}
	if m.Processes != 4 || m.RSS == 0 || m.PSS == 0 || m.PSS > m.RSS {
		t.Errorf("Memory = %+v, want 4 processes (master and 3 workers), 0 < PSS <= RSS", m)
	}
	if err := p.Stop(false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Memory(); err == nil {
		t.Error("Memory of a stopped pool succeeded")
	}
}
