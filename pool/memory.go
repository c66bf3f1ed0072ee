// memory.go owns what a pool's processes hold in memory, read from /proc.

package pool

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Memory is what the processes of a pool (its master and every worker)
// hold in memory. RSS counts shared pages (the code of php and its
// extensions, opcache's shared memory) once per process; PSS divides each
// shared page among the processes sharing it, so the PSS of two pools adds
// up to what they cost together, which is what a switch costs while both
// run.
type Memory struct {
	RSS, PSS  uint64 // bytes
	Processes int
}

// Memory reads /proc/<pid>/smaps_rollup of every live process in the
// pool's process group.
func (p *Pool) Memory() (Memory, error) {
	pgid := p.Pid()
	if pgid == 0 {
		return Memory{}, fmt.Errorf("memory of pool %s: no master running", p.o.ID)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return Memory{}, fmt.Errorf("memory of pool %s: %w", p.o.ID, err)
	}
	var m Memory
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, pg, ok := procStat(pid); !ok || pg != pgid || state == 'Z' || state == 'X' {
			continue
		}
		rss, pss, err := smapsRollup(pid)
		if err != nil {
			continue // exited meanwhile
		}
		m.RSS += rss
		m.PSS += pss
		m.Processes++
	}
	if m.Processes == 0 {
		return m, fmt.Errorf("memory of pool %s: no process in group %d", p.o.ID, pgid)
	}
	return m, nil
}

// smapsRollup returns the Rss and Pss lines of /proc/<pid>/smaps_rollup, in
// bytes.
func smapsRollup(pid int) (rss, pss uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0, err
	}
	return parseSmapsRollup(b)
}

func parseSmapsRollup(b []byte) (rss, pss uint64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) != 3 || string(f[2]) != "kB" {
			continue
		}
		var dst *uint64
		switch string(f[0]) {
		case "Rss:":
			dst = &rss
		case "Pss:":
			dst = &pss
		default:
			continue
		}
		kb, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("smaps_rollup: %q: %w", sc.Bytes(), err)
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("smaps_rollup: no Rss and Pss lines")
	}
	return rss, pss, nil
}
