package pool

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fpmux/fpmux/internal/logtest"
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

// TestDrainingMasterIsNotRestarted kills the master of a draining pool: no
// request may go to it any more, so no new master is started; Stop then
// finishes at once.
func TestDrainingMasterIsNotRestarted(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	var log logtest.Buffer
	dir := poolDir(t)
	p := startPool(t, Options{
		ID: "drained1", Root: root, Dir: dir, Binary: bin,
		Logger: log.Logger(slog.LevelInfo),
	})
	old := p.Pid()
	p.Drain()
	if err := syscallKill(old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the pool did not note its master's death while draining", func() bool {
		return strings.Contains(log.String(), "master died while the pool drains")
	})
	if p.Restarts() != 0 || p.Pid() != 0 {
		t.Errorf("draining pool after its master died: restarts %d pid %d, want 0 and 0", p.Restarts(), p.Pid())
	}
	if err := p.Stop(false); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if strings.Contains(log.String(), "master restarted") {
		t.Errorf("a draining pool's master was restarted:\n%s", log.String())
	}
	groupGoneESRCH(t, old)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Dir still there: %v", err)
	}
}
