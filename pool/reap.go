// reap.go owns clean-up after an fpmux that was killed before it could stop
// its pools: a pool directory it left behind, with possibly a live master.

package pool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fpmux/fpmux/internal/proc"
)

// PingPrefix and StatusPrefix begin the ping and status paths of every
// pool fpmux runs; the rest is random per pool start (Pool.PingPath,
// Pool.StatusPath, ReadPagePaths). The web server must never reach them:
// fcgimux also refuses requests whose params name a path beginning so.
const (
	PingPrefix   = pingPrefix
	StatusPrefix = statusPrefix
)

// Reap stops what a previous fpmux left in a pool directory: if its pid
// file names a live php-fpm master whose config is this directory's, that
// master's whole process group is killed. Then the directory is removed.
// It returns the pid it killed, or 0. Parent-death signals make this rare
// (a master follows a killed fpmux), but a master that ignored it, or a
// state_dir from before a reboot, must not keep a stale socket around.
func Reap(dir string) (int, error) {
	killed, err := killLeftMaster(dir)
	if err != nil {
		return killed, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return killed, fmt.Errorf("reap pool %s: %w", dir, err)
	}
	return killed, nil
}

// killLeftMaster is Reap without removing dir: if its pid file names a live
// php-fpm master on this directory's config, that master's group is killed.
// It returns the pid it killed, or 0.
func killLeftMaster(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, pidName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reap pool %s: %w", dir, err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if perr != nil || pid <= 1 || !isOurMaster(pid, dir) {
		return 0, nil
	}
	if st, err := proc.ReadStat(pid); err == nil && st.Pgrp == pid {
		syscall.Kill(-pid, syscall.SIGKILL)
		if err := waitGroupGone(pid, killWait); err != nil {
			return pid, fmt.Errorf("reap pool %s: %w", dir, err)
		}
		return pid, nil
	}
	syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(killWait)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return pid, nil
}

// isOurMaster tells whether pid is a php-fpm master running the config in
// dir: php-fpm titles its master "php-fpm: master process (<config>)", so a
// recycled pid of another program is never killed.
func isOurMaster(pid int, dir string) bool {
	cmdline, err := proc.Cmdline(pid)
	return err == nil && strings.Contains(cmdline, "php-fpm") && strings.Contains(cmdline, filepath.Join(dir, confName))
}
