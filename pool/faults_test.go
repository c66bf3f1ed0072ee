package pool

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestWrapperWithoutExecIsRefused starts a pool through a wrapper script
// that runs php-fpm as its child. php-fpm leads a session of its own, so
// fpmux could not signal it through the wrapper's group, and it would
// outlive fpmux: Start must refuse it, say why, and leave nothing running.
func TestWrapperWithoutExecIsRefused(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	wrapper := writeScript(t, t.TempDir(), "php-fpm", bin+` "$@"`+"\n")
	dir := poolDir(t)
	t.Cleanup(func() { // what a Start without the check leaves
		for _, pid := range append(liveProcs(dir), liveProcs("pool noexec")...) {
			syscallKill(pid)
		}
	})
	p, err := Start(t.Context(), Options{ID: "noexec", Root: root, Dir: dir, Binary: wrapper, Logger: testLogger(t)})
	if err == nil {
		p.Stop(true)
		t.Fatal("Start accepted a wrapper that runs php-fpm as a child")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "runs php-fpm as a child") || !strings.Contains(err.Error(), "must exec php-fpm") {
		t.Errorf("error %q does not say the wrapper must exec php-fpm", err)
	}
	eventually(t, 10*time.Second, "php-fpm left running by the refused start", func() bool {
		return len(liveProcs(dir)) == 0 && len(liveProcs("pool noexec")) == 0
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir still there: %v", err)
	}
}
