package pool

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// leftBehind starts php-fpm on a pool dir the way a killed fpmux would have
// left it: running, with no owner that will stop it.
func leftBehind(t *testing.T) (dir string, pid int) {
	t.Helper()
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": "<?php echo 1;"})
	dir = poolDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	usr, grp := workerIdentity(os.Geteuid(), nil)
	conf := filepath.Join(dir, confName)
	o := Options{ID: "stale", Root: root, Dir: dir, StopTimeout: time.Second}.withDefaults()
	pages, err := newPagePaths()
	if err != nil {
		t.Fatal(err)
	}
	body := renderConfig(confParams{ID: "stale", Root: root, Dir: dir, StopTimeout: time.Second, Pages: pages, User: usr, Group: grp, Directives: o.Directives})
	if err := os.WriteFile(conf, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, commandArgs(conf, nil)...)
	cmd.SysProcAttr = newGroupAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		syscallKill(-cmd.Process.Pid)
		<-waited
	})
	eventually(t, 10*time.Second, "the stale master to write its pid file", func() bool {
		_, err := os.Stat(filepath.Join(dir, pidName))
		return err == nil
	})
	return dir, cmd.Process.Pid
}

func TestReapKillsLeftBehindMaster(t *testing.T) {
	dir, pid := leftBehind(t)
	got, err := Reap(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != pid {
		t.Errorf("Reap killed %d, want the master %d", got, pid)
	}
	groupGoneESRCH(t, pid)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pool dir still there: %v", err)
	}
}

func TestReapSparesAnotherProgram(t *testing.T) {
	dir := poolDir(t)
	os.MkdirAll(dir, 0o700)
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleeper.Process.Kill()
		sleeper.Wait()
	})
	// A recycled pid in a stale pid file: not php-fpm, not ours.
	os.WriteFile(filepath.Join(dir, pidName), []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o600)
	got, err := Reap(dir)
	if err != nil || got != 0 {
		t.Fatalf("Reap = %d, %v; want 0, nil", got, err)
	}
	if !alive(sleeper.Process.Pid) {
		t.Fatal("Reap killed a process that is not a php-fpm master of this pool")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pool dir still there: %v", err)
	}
}
