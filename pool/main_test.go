package pool

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play a whole fpmux process that starts a
// lifeline and a pool and then blocks, so a test can kill it; and the
// lifeline itself, which is this binary run again.
func TestMain(m *testing.M) {
	LifelineMain()
	if os.Getenv("FPMUX_POOL_TEST_CHILD") == "1" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

func runChild() {
	if _, err := StartLifeline(filepath.Dir(os.Getenv("FPMUX_POOL_TEST_DIR"))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p, err := Start(context.Background(), Options{
		ID:     "orphan",
		Root:   os.Getenv("FPMUX_POOL_TEST_ROOT"),
		Dir:    os.Getenv("FPMUX_POOL_TEST_DIR"),
		Binary: os.Getenv("FPMUX_POOL_TEST_BIN"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(p.Pid())
	time.Sleep(time.Hour)
}

// TestKilledOwnerTakesMasterAlong SIGKILLs a process that runs a pool: its
// lifeline sees the pipe close and kills the master's group.
func TestKilledOwnerTakesMasterAlong(t *testing.T) {
	bin := phpFPM(t)
	root := newRelease(t, map[string]string{"index.php": `<?php echo "up";`})
	dir := poolDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"FPMUX_POOL_TEST_CHILD=1",
		"FPMUX_POOL_TEST_ROOT="+root,
		"FPMUX_POOL_TEST_DIR="+dir,
		"FPMUX_POOL_TEST_BIN="+bin,
	)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var masterPid int
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if masterPid > 0 {
			_ = syscall.Kill(-masterPid, syscall.SIGKILL)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child did not report a master pid: %v", err)
	}
	masterPid = atoiT(t, strings.TrimSpace(line))
	var workers []int
	eventually(t, 10*time.Second, "no workers", func() bool {
		workers = groupMembers(masterPid)
		return len(workers) > 0
	})

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, 15*time.Second, "master "+strconv.Itoa(masterPid)+" outlived its owner", func() bool {
		return !alive(masterPid)
	})
	for _, w := range workers {
		eventually(t, 15*time.Second, "worker "+strconv.Itoa(w)+" outlived its owner", func() bool { return !alive(w) })
	}
	groupGoneESRCH(t, masterPid)
}
