package main

import (
	"errors"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fpmux/fpmux/config"
)

func TestAccountID(t *testing.T) {
	lookup := func(name string) (string, error) {
		switch name {
		case "deploy":
			return "1001", nil
		case "weird":
			return "S-1-5-18", nil
		case "broken":
			return "", errors.New("nss unreachable")
		}
		return "", user.UnknownUserError(name)
	}
	tests := []struct {
		name  string
		want  int
		words string // in the error; "" for none
	}{
		{"", -1, ""},
		{"0", 0, ""},
		{"65534", 65534, ""},
		{"deploy", 1001, ""},
		{"nosuchuser", -1, `admin_owner: "nosuchuser" does not exist`},
		{"broken", -1, `admin_owner: look up "broken": nss unreachable`},
		{"weird", -1, "not a number"},
	}
	for _, tt := range tests {
		got, err := accountID("admin_owner", tt.name, lookup)
		if got != tt.want || (err == nil) != (tt.words == "") || err != nil && !strings.Contains(err.Error(), tt.words) {
			t.Errorf("accountID(%q) = %d, %v; want %d and an error saying %q", tt.name, got, err, tt.want, tt.words)
		}
	}
}

// TestListenAdminSocket opens the admin socket as serve does: mode 0660
// under any umask, owned as configured, and not created at all when an
// owner does not exist.
func TestListenAdminSocket(t *testing.T) {
	// Giving a file away needs root; otherwise the test gives it to its own
	// ids, which still takes the chown path.
	uid, gid := 65534, 65534
	if os.Geteuid() != 0 {
		uid, gid = os.Geteuid(), os.Getegid()
	}
	defer syscall.Umask(syscall.Umask(0)) // the widest umask: the mode must not come from it
	tests := []struct {
		name, owner, group string
		wantUID, wantGID   int
		words              string
	}{
		{"numeric ids", strconv.Itoa(uid), strconv.Itoa(gid), uid, gid, ""},
		{"owner only", strconv.Itoa(uid), "", uid, os.Getegid(), ""},
		{"names", "root", "root", 0, 0, ""},
		{"unknown owner", "fpmux-no-such-user", "", 0, 0, "admin_owner"},
		{"unknown group", "", "fpmux-no-such-group", 0, 0, "admin_group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.owner == "root" && os.Geteuid() != 0 {
				t.Skip("giving a socket to root needs root")
			}
			path := filepath.Join(t.TempDir(), "admin.sock")
			cfg := &config.Config{Admin: "unix:" + path, AdminOwner: tt.owner, AdminGroup: tt.group}
			var files []string
			ln, err := listenAdmin(cfg, &files, slog.New(slog.DiscardHandler))
			if tt.words != "" {
				if err == nil || !strings.Contains(err.Error(), tt.words) {
					t.Fatalf("err = %v, want one naming %s", err, tt.words)
				}
				if _, serr := os.Lstat(path); serr == nil {
					t.Errorf("the socket was created though %s is unknown", tt.words)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
				t.Errorf("mode %v, want a socket of mode 0660", fi.Mode())
			}
			if int(st.Uid) != tt.wantUID || int(st.Gid) != tt.wantGID {
				t.Errorf("owned by %d:%d, want %d:%d", st.Uid, st.Gid, tt.wantUID, tt.wantGID)
			}
		})
	}
}
