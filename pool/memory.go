// memory.go owns what a pool's processes hold in memory, read from /proc.

package pool

import (
	"fmt"

	"github.com/fpmux/fpmux/internal/proc"
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
	group, err := proc.Group(pgid)
	if err != nil {
		return Memory{}, fmt.Errorf("memory of pool %s: %w", p.o.ID, err)
	}
	var m Memory
	for _, st := range group {
		rss, pss, err := proc.SmapsRollup(st.Pid)
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
