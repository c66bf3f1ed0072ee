// This file owns the fleet line of fpmux status: whether this host's fleet
// agent reaches etcd (GET /v1/fleet, served only with the fleet key).

package main

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/fpmux/fpmux/fleet"
)

// fleetHeader marks the admin API's answers of a fleet host, so that fpmux
// status asks GET /v1/fleet only there.
const fleetHeader = "Fpmux-Fleet"

// withFleetHeader sets fleetHeader on every answer of next.
func withFleetHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(fleetHeader, "/v1/fleet")
		next.ServeHTTP(w, r)
	})
}

// printFleetLine prints, after the release table, the host's part in its
// fleet; nothing for an fpmux without the fleet key.
func (c *client) printFleetLine() error {
	if !c.fleet {
		return nil
	}
	data, err := c.do(http.MethodGet, "/v1/fleet", nil)
	if err != nil {
		return err
	}
	var info fleet.Info
	if err := json.Unmarshal(data, &info); err != nil {
		return fmt.Errorf("decode fleet state from fpmux at %s: %w", c.admin, err)
	}
	fmt.Fprintln(c.stdout)
	_, err = fmt.Fprintln(c.stdout, fleetLine(info))
	return err
}

// fleetLine says which fleet the host is in and whether it reaches etcd.
func fleetLine(info fleet.Info) string {
	state := "etcd reachable"
	if !info.EtcdUp {
		state = "etcd UNREACHABLE: serving the active release as before, acting on the fleet again once etcd answers"
	}
	if !info.EtcdSince.IsZero() {
		state += " (since " + info.EtcdSince.Local().Format("15:04:05") + ")"
	}
	return fmt.Sprintf("fleet: app %s, host %s: %s", info.App, info.Host, state)
}
