// This file owns who a pool's workers run as and what they may open: a
// release whose root or scripts the workers cannot reach serves nothing
// but 404s ("Primary script unknown") while php-fpm's ping answers, so the
// supervisor checks them with Worker.Check before the release's first
// request.

package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Worker is the account a pool's workers run as.
type Worker struct {
	Name string // the user's name (or its uid when it has none), for messages
	UID  int
	GIDs []int // the group the workers run with first, then the supplementary groups
}

// WorkerOf returns who the workers of a pool with directives run as.
// php-fpm changes user only when it is started as root: then the pool's
// user (directive user, else what workerIdentity writes: www-data, or
// nobody), with its group (directive group, else workerIdentity's, else
// the user's primary group) and the user's supplementary groups, which
// php-fpm sets with initgroups. Otherwise the workers keep fpmux's own
// user and groups.
func WorkerOf(directives map[string]string) (Worker, error) {
	if os.Geteuid() != 0 {
		w := Worker{UID: os.Geteuid(), GIDs: []int{os.Getegid()}}
		w.Name = strconv.Itoa(w.UID)
		if u, err := user.LookupId(w.Name); err == nil {
			w.Name = u.Username
		}
		groups, err := os.Getgroups()
		if err != nil {
			return Worker{}, fmt.Errorf("worker groups: %w", err)
		}
		w.GIDs = appendNew(w.GIDs, groups...)
		return w, nil
	}
	name, group := directives["user"], directives["group"]
	if name == "" {
		var g string
		name, g = workerIdentity(0, directives)
		if group == "" {
			group = g
		}
	}
	u, err := lookupUser(name)
	if err != nil {
		return Worker{}, fmt.Errorf("worker user %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return Worker{}, fmt.Errorf("worker group %q: %w", group, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	w := Worker{Name: u.Username, UID: uid, GIDs: []int{gid}}
	ids, err := u.GroupIds()
	if err != nil {
		return Worker{}, fmt.Errorf("groups of worker user %s: %w", u.Username, err)
	}
	for _, s := range ids {
		if n, err := strconv.Atoi(s); err == nil {
			w.GIDs = appendNew(w.GIDs, n)
		}
	}
	return w, nil
}

// lookupUser and lookupGroup find an account by name, or by its numeric
// id as php-fpm takes a numeric user or group directive.
func lookupUser(name string) (*user.User, error) { return byNameOrID(name, user.Lookup, user.LookupId) }

func lookupGroup(name string) (*user.Group, error) {
	return byNameOrID(name, user.LookupGroup, user.LookupGroupId)
}

func byNameOrID[T any](name string, byName, byID func(string) (T, error)) (T, error) {
	v, err := byName(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			return byID(name)
		}
	}
	return v, err
}

func appendNew(s []int, vs ...int) []int {
	for _, v := range vs {
		if !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	return s
}

// AccessError is a path on the way to a file that refuses the workers
// what they need of it.
type AccessError struct {
	Path  string // the directory or file that refuses
	Dir   bool   // Path is a directory, which must let the workers through (x)
	Mode  fs.FileMode
	Owner string // the owning user's name, or its uid
	// Worker is the account refused.
	Worker string
}

func (e *AccessError) Error() string {
	what, need := "file", "read (r)"
	if e.Dir {
		what, need = "directory", "search (x)"
	}
	return fmt.Sprintf("%s %s (mode %04o, owner %s) gives the pool's user %s no %s permission",
		what, e.Path, e.Mode.Perm(), e.Owner, e.Worker, need)
}

// Check tells whether w can open path as php-fpm does a script: every
// directory from / down to it must grant w search (x) and path itself, a
// file, read (r), or, a directory, search. Symlinks are followed first, so
// the directories judged are those the kernel walks. It judges by mode
// bits (owner, then group, then others; uid 0 passes everything); a path
// with a POSIX ACL, which may grant what its mode bits do not, is not
// refused (php-fpm's answer will tell). A refusal is an *AccessError; a path that does not
// exist is an error matching fs.ErrNotExist.
func (w Worker) Check(path string) error {
	if w.UID == 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("check access to %s: %w", path, err)
	}
	parts := strings.Split(strings.TrimPrefix(real, "/"), "/")
	cur := "/"
	for i := -1; i < len(parts); i++ {
		if i >= 0 {
			cur = filepath.Join(cur, parts[i])
		}
		fi, err := os.Stat(cur)
		if err != nil {
			return fmt.Errorf("check access to %s: %w", path, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("check access to %s: no owner for %s", path, cur)
		}
		bit := fs.FileMode(1) // x, in the "other" position
		if !fi.IsDir() {
			bit = 4 // r
		}
		if !w.allowed(fi.Mode().Perm(), int(st.Uid), int(st.Gid), bit) && !hasACL(cur) {
			owner := strconv.Itoa(int(st.Uid))
			if u, err := user.LookupId(owner); err == nil {
				owner = u.Username
			}
			return &AccessError{Path: cur, Dir: fi.IsDir(), Mode: fi.Mode(), Owner: owner, Worker: w.Name}
		}
	}
	return nil
}

// hasACL tells whether path carries a POSIX access ACL beyond its mode
// bits.
func hasACL(path string) bool {
	n, err := syscall.Getxattr(path, "system.posix_acl_access", nil)
	return err == nil && n > 0
}

// allowed applies the kernel's choice of permission class: the owner's
// bits when w owns the file, else the group's when w is in its group,
// else the others'.
func (w Worker) allowed(perm fs.FileMode, uid, gid int, bit fs.FileMode) bool {
	switch {
	case uid == w.UID:
		return perm&(bit<<6) != 0
	case slices.Contains(w.GIDs, gid):
		return perm&(bit<<3) != 0
	}
	return perm&bit != 0
}

// IsAccessError tells whether err is a refusal Check found (as opposed to
// a path it could not look at).
func IsAccessError(err error) bool {
	var ae *AccessError
	return errors.As(err, &ae)
}
