// sched.go owns the scheduling policy of a pool's processes: SCHED_IDLE
// while the pool starts or stops, so that its CPU (php-fpm's module set-up
// and forks, the workers' graceful exit) comes only out of what the
// release serving traffic leaves idle, and SCHED_OTHER while it serves.

package pool

import (
	"errors"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// setPolicy gives the master pgid and every live process of its group the
// scheduling policy policy (unix.SCHED_IDLE or unix.SCHED_NORMAL, which is SCHED_OTHER), the
// master first: a worker it forks after that inherits the new policy, and
// one it forked before is in /proc by the time the group is read. The
// policy is per process (per thread, strictly: php-fpm runs one), unlike
// the nice value, which setpriority sets for a whole process group.
func setPolicy(pgid, policy int) error {
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: uint32(policy)}
	set := func(pid int) error {
		// SCHED_FLAG_KEEP_PARAMS would keep the nice value: sched_setattr
		// sets it otherwise, so read it and pass it on.
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, pid)
		if err != nil {
			return err
		}
		a := *attr
		a.Nice = int32(20 - prio)
		return unix.SchedSetAttr(pid, &a, 0)
	}
	if err := set(pgid); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pgid {
			continue
		}
		if state, pg, ok := procStat(pid); !ok || pg != pgid || state == 'Z' || state == 'X' {
			continue
		}
		if err := set(pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
