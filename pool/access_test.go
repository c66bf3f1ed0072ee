package pool

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// accessTree is a directory tree whose every directory up to / lets
// anyone through, so that a case's own modes decide.
func accessTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestWorkerCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the cases give files to other owners: needs root (CI runs as root)")
	}
	const uid, gid = 4711, 4712 // an account of nobody's on this machine
	worker := Worker{Name: "app", UID: uid, GIDs: []int{gid, 4713}}
	type entry struct {
		path     string // under the case's dir; a trailing / makes a directory
		mode     os.FileMode
		uid, gid int
		link     string // when set, path is a symlink to this (under the dir)
	}
	for _, c := range []struct {
		name    string
		tree    []entry
		check   string // the path checked
		w       Worker
		refused string // the path that refuses, "" when allowed
		dir     bool
	}{
		{"readable", []entry{{"r/", 0o755, 0, 0, ""}, {"r/index.php", 0o644, 0, 0, ""}}, "r/index.php", worker, "", false},
		{"root 0700 of root", []entry{{"r/", 0o700, 0, 0, ""}, {"r/index.php", 0o644, 0, 0, ""}}, "r/index.php", worker, "r", true},
		{"root itself", []entry{{"r/", 0o700, 0, 0, ""}}, "r", worker, "r", true},
		{"traversable, not listable", []entry{{"r/", 0o711, 0, 0, ""}, {"r/index.php", 0o644, 0, 0, ""}}, "r/index.php", worker, "", false},
		{"script 0600 of root", []entry{{"r/", 0o755, 0, 0, ""}, {"r/index.php", 0o600, 0, 0, ""}}, "r/index.php", worker, "r/index.php", false},
		{"script 0000", []entry{{"r/", 0o755, 0, 0, ""}, {"r/index.php", 0, uid, gid, ""}}, "r/index.php", worker, "r/index.php", false},
		{"a directory on the way", []entry{{"r/", 0o755, 0, 0, ""}, {"r/lib/", 0o700, 0, 0, ""}, {"r/lib/a.php", 0o644, 0, 0, ""}}, "r/lib/a.php", worker, "r/lib", true},
		{"the worker's group", []entry{{"r/", 0o750, 0, gid, ""}, {"r/index.php", 0o640, 0, 4713, ""}}, "r/index.php", worker, "", false},
		{"another group", []entry{{"r/", 0o750, 0, 99, ""}}, "r", worker, "r", true},
		{"the worker's own 0700", []entry{{"r/", 0o700, uid, 0, ""}, {"r/index.php", 0o400, uid, 0, ""}}, "r/index.php", worker, "", false},
		// The owner's bits decide for the owner, even when others' allow.
		{"owner class first", []entry{{"r/", 0o077, uid, 0, ""}}, "r", worker, "r", true},
		{"group class before others", []entry{{"r/", 0o705, 0, gid, ""}}, "r", worker, "r", true},
		{"through a symlink", []entry{{"real/", 0o700, 0, 0, ""}, {"real/x.php", 0o644, 0, 0, ""}, {"r/", 0o755, 0, 0, ""}, {"r/x.php", 0, 0, 0, "real/x.php"}},
			"r/x.php", worker, "real", true},
		{"root reads everything", []entry{{"r/", 0o700, 0, 0, ""}, {"r/index.php", 0, 0, 0, ""}}, "r/index.php", Worker{Name: "root"}, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := accessTree(t)
			for _, e := range c.tree {
				p := filepath.Join(dir, e.path)
				var err error
				switch {
				case e.link != "":
					err = os.Symlink(filepath.Join(dir, e.link), p)
				case e.path[len(e.path)-1] == '/':
					err = os.Mkdir(p, 0o700)
				default:
					err = os.WriteFile(p, []byte("<?php"), 0o600)
				}
				if err != nil {
					t.Fatal(err)
				}
				if e.link == "" {
					if err := os.Chown(p, e.uid, e.gid); err != nil {
						t.Fatal(err)
					}
					if err := os.Chmod(p, e.mode); err != nil {
						t.Fatal(err)
					}
				}
			}
			err := c.w.Check(filepath.Join(dir, c.check))
			if c.refused == "" {
				if err != nil {
					t.Fatalf("Check: %v, want allowed", err)
				}
				return
			}
			var ae *AccessError
			if !errors.As(err, &ae) {
				t.Fatalf("Check: %v, want an *AccessError", err)
			}
			if want := filepath.Join(dir, c.refused); ae.Path != want || ae.Dir != c.dir || ae.Worker != c.w.Name {
				t.Errorf("refused by %+v, want %s (dir %v) refusing %s", ae, want, c.dir, c.w.Name)
			}
			if !IsAccessError(err) {
				t.Error("IsAccessError = false")
			}
		})
	}
}

// TestWorkerCheckLeavesACLsToTheKernel: a directory whose mode bits refuse
// the worker but whose POSIX ACL grants it is not refused.
func TestWorkerCheckLeavesACLsToTheKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the directory to another owner")
	}
	dir := filepath.Join(accessTree(t), "r")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	w := Worker{Name: "app", UID: 4711, GIDs: []int{4712}}
	if !IsAccessError(w.Check(dir)) {
		t.Fatal("a 0700 directory of root is not refused before the ACL")
	}
	// user::rwx, user:4711:r-x, group::---, mask::r-x, other::---
	// (the xattr form of an ACL: version 2, then tag, perm, id per entry).
	acl := []byte{2, 0, 0, 0}
	for _, e := range [][3]uint32{{0x01, 7, 0xffffffff}, {0x02, 5, 4711}, {0x04, 0, 0xffffffff}, {0x10, 5, 0xffffffff}, {0x20, 0, 0xffffffff}} {
		acl = append(acl, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8),
			byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	if err := syscall.Setxattr(dir, "system.posix_acl_access", acl, 0); err != nil {
		t.Skipf("this file system takes no POSIX ACL: %v", err)
	}
	if err := w.Check(dir); err != nil {
		t.Errorf("Check of a directory whose ACL lets the worker in: %v, want allowed", err)
	}
}

func TestWorkerCheckMissing(t *testing.T) {
	err := Worker{Name: "app", UID: 4711}.Check(filepath.Join(accessTree(t), "nope.php"))
	if !errors.Is(err, fs.ErrNotExist) || IsAccessError(err) {
		t.Errorf("Check of a missing file: %v, want fs.ErrNotExist and no access error", err)
	}
}

func TestWorkerOf(t *testing.T) {
	if os.Geteuid() != 0 {
		w, err := WorkerOf(map[string]string{"user": "someone-else"})
		if err != nil || w.UID != os.Geteuid() || w.GIDs[0] != os.Getegid() {
			t.Errorf("WorkerOf as uid %d: %+v, %v; want fpmux's own user, whatever the pool says", os.Geteuid(), w, err)
		}
		return
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	for _, c := range []struct {
		name       string
		directives map[string]string
		user       string
		gid        string // the first group; "" for the user's primary one
		err        bool
	}{
		{"named user", map[string]string{"user": "nobody"}, "nobody", "", false},
		{"numeric user", map[string]string{"user": nobody.Uid}, "nobody", "", false},
		{"user and group", map[string]string{"user": "nobody", "group": "0"}, "nobody", "0", false},
		{"no such user", map[string]string{"user": "no-such-user-here"}, "", "", true},
		{"no such group", map[string]string{"user": "nobody", "group": "no-such-group-here"}, "", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := WorkerOf(c.directives)
			if c.err {
				if err == nil {
					t.Fatalf("WorkerOf: %+v, want an error", w)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gid := c.gid
			if gid == "" {
				gid = nobody.Gid
			}
			if w.Name != c.user || strconv.Itoa(w.UID) != nobody.Uid || strconv.Itoa(w.GIDs[0]) != gid {
				t.Errorf("WorkerOf = %+v, want user %s (uid %s) with group %s first", w, c.user, nobody.Uid, gid)
			}
		})
	}
	// With no user directive, the account workerIdentity writes.
	want, _ := workerIdentity(0, nil)
	if w, err := WorkerOf(nil); err != nil || w.Name != want {
		t.Errorf("WorkerOf(nil) = %+v, %v; want %s", w, err, want)
	}
}
