// This file owns opening the admin listener from the config: a unix socket
// of mode 0660 handed to admin_owner and admin_group, or a TCP address.

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"

	"github.com/fpmux/fpmux/config"
)

// listenAdmin listens on cfg.Admin. A unix socket is created with mode 0660
// and then owned by admin_owner and admin_group (each left as created when
// empty), which are resolved first, so an unknown name stops fpmux before
// anything is created.
func listenAdmin(cfg *config.Config, files *[]string, log *slog.Logger) (net.Listener, error) {
	uid, err := accountID("admin_owner", cfg.AdminOwner, lookupUID)
	if err != nil {
		return nil, err
	}
	gid, err := accountID("admin_group", cfg.AdminGroup, lookupGID)
	if err != nil {
		return nil, err
	}
	ln, err := listenAddr(cfg.Admin, 0o660, files)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	network, address, _ := config.ParseAddr(cfg.Admin) // listenAddr parsed it
	switch {
	case network == "unix" && (uid >= 0 || gid >= 0):
		if err := os.Lchown(address, uid, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin_owner, admin_group: give %s to %s:%s: %w", address, cfg.AdminOwner, cfg.AdminGroup, err)
		}
	case network == "tcp":
		if cfg.AdminOwner != "" || cfg.AdminGroup != "" {
			log.Warn("admin_owner and admin_group apply to a unix admin socket only", "admin", cfg.Admin)
		}
		if cfg.AdminToken == "" {
			log.Warn("the admin API listens on TCP without admin_token: every local user can deploy; set admin_token or use a unix socket", "admin", cfg.Admin)
		}
	}
	return ln, nil
}

// lookupUID and lookupGID return the id of a user or group name, for
// accountID.
func lookupUID(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", err
	}
	return u.Uid, nil
}

func lookupGID(name string) (string, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return "", err
	}
	return g.Gid, nil
}

// accountID resolves the user or group set under key: -1 when it is empty,
// a numeric id as it is, a name through lookup, which returns its id.
func accountID(key, name string, lookup func(string) (string, error)) (int, error) {
	if name == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	s, err := lookup(name)
	var unknownUser user.UnknownUserError
	var unknownGroup user.UnknownGroupError
	if errors.As(err, &unknownUser) || errors.As(err, &unknownGroup) {
		return -1, fmt.Errorf("%s: %q does not exist on this system: create it, or give a numeric id", key, name)
	}
	if err != nil {
		return -1, fmt.Errorf("%s: look up %q: %w", key, name, err)
	}
	id, err := strconv.Atoi(s)
	if err != nil {
		return -1, fmt.Errorf("%s: %q has the id %q, not a number", key, name, s)
	}
	return id, nil
}
