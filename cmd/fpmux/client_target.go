// This file owns where a client command finds the admin API and its token:
// -admin and -token, else the config file -config names (the daemon's
// own: its admin and admin_token), else $FPMUX_ADMIN and
// $FPMUX_ADMIN_TOKEN, else the daemon's default admin socket.

package main

import (
	"os"
	"strings"

	"github.com/fpmux/fpmux/config"
)

// clientAdminEnv names the environment variable the client reads the admin
// address from when neither -admin nor -config gives it.
const clientAdminEnv = "FPMUX_ADMIN"

// clientResolved is a target's address and token, each with where it came
// from, for messages.
type clientResolved struct {
	admin, adminFrom string
	token, tokenFrom string
}

// resolve picks the admin address and token. A flag wins over -config, as
// the more particular; -config over the environment, as it was named on
// this command line. A config that does not load is an error (exit 1)
// naming its problems.
func (t *clientTarget) resolve() (clientResolved, error) {
	r := clientResolved{admin: strings.TrimSpace(t.admin), adminFrom: "-admin", token: strings.TrimSpace(t.token), tokenFrom: "-token"}
	if t.config != "" && (r.admin == "" || r.token == "") {
		cfg, err := config.Load(t.config)
		if err != nil {
			return r, &clientExitError{code: 1, msg: "-config: " + err.Error()}
		}
		if r.admin == "" {
			r.admin, r.adminFrom = cfg.Admin, t.config+"'s admin"
		}
		if r.token == "" && cfg.AdminToken != "" {
			r.token, r.tokenFrom = cfg.AdminToken, t.config+"'s admin_token"
		}
	}
	if r.admin == "" {
		r.admin, r.adminFrom = strings.TrimSpace(os.Getenv(clientAdminEnv)), clientAdminEnv
	}
	if r.admin == "" {
		r.admin, r.adminFrom = clientDefaultAdmin, "the default admin address"
	}
	if r.token == "" {
		r.token, r.tokenFrom = strings.TrimSpace(os.Getenv(clientTokenEnv)), clientTokenEnv
	}
	return r, nil
}
