// This file sends the real fpmux's admin API what a web page in a browser on
// the host could: "simple" cross-site POSTs (text/plain, a form), requests
// with an Origin, and requests under a rebound DNS name, over the unix socket
// and over a loopback TCP admin without a token.

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// browserLike is one request a page could make, and what fpmux must answer.
type browserLike struct {
	name, method, path string
	host               string // "" for the listener's own name
	ctype, origin      string
	body               string
	status             int
}

// rawAdmin sends one request to the admin API at network/address with the
// Host, Content-Type and Origin given (none when empty) and returns the
// status and the JSON error.
func rawAdmin(t *testing.T, network, address string, b browserLike) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, address)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(b.method, "http://fpmux"+b.path, strings.NewReader(b.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = b.host
	if b.ctype != "" {
		req.Header.Set("Content-Type", b.ctype)
	}
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", b.name, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e struct{ Error string }
	json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Error
}

// activeRelease asks GET /v1/healthz which release is active.
func activeRelease(t *testing.T, network, address, host string) string {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, address)
		},
	}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+host+"/v1/healthz", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Active string }
	json.NewDecoder(resp.Body).Decode(&h)
	return h.Active
}

// TestAdminRefusesBrowserRequests: over the unix socket and over a loopback
// TCP admin without admin_token, a rollback or a deploy sent as a page
// would send it is refused and changes nothing, reading the releases under
// a foreign Host is refused, and the fpmux client and curl's way of calling
// still work. (Before, the text/plain rollback rolled back.)
func TestAdminRefusesBrowserRequests(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.deploy("r1")
	s.deploy("r2")
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	r3 := s.newRelease("r3")
	deployBody := `{"id":"r3","root":"` + r3 + `"}`

	check := func(network, address, self, active, next string) {
		t.Helper()
		for _, b := range []browserLike{
			{name: "rollback as text/plain", method: "POST", path: "/v1/rollback", ctype: "text/plain", body: "{}", status: 415},
			{name: "rollback as a form", method: "POST", path: "/v1/rollback", ctype: "application/x-www-form-urlencoded", body: "a=b", status: 415},
			{name: "deploy as text/plain", method: "POST", path: "/v1/releases", ctype: "text/plain", body: deployBody, status: 415},
			{name: "activate with no Content-Type", method: "POST", path: "/v1/releases/r1/activate", status: 415},
			{name: "rollback from a page", method: "POST", path: "/v1/rollback", ctype: "application/json", origin: "http://evil.example", status: 403},
			{name: "list from a page", method: "GET", path: "/v1/releases", origin: "http://evil.example", status: 403},
			{name: "list under a rebound name", method: "GET", path: "/v1/releases", host: "evil.example" + portOf(self), status: 403},
			{name: "rollback under a rebound name", method: "POST", path: "/v1/rollback", host: "evil.example", ctype: "application/json", status: 403},
			{name: "list as curl asks", method: "GET", path: "/v1/releases", host: "localhost" + portOf(self), status: 200},
		} {
			if b.host == "" {
				b.host = self
			}
			status, msg := rawAdmin(t, network, address, b)
			if status != b.status {
				t.Errorf("%s %s: %s: status %d (%q), want %d", network, address, b.name, status, msg, b.status)
			}
		}
		if got := activeRelease(t, network, address, self); got != active {
			t.Fatalf("%s: after the refused requests %q is active, want %s (unchanged)", network, got, active)
		}
		s.wantServedBy(c, active)
		// The client commands get through: a deploy (a POST with a body)
		// and an activation (a POST without one).
		if code, out, errs := s.cli("deploy", "-no-activate", "-id", next, "-root", s.newRelease(next)); code != 0 {
			t.Fatalf("%s: fpmux deploy -no-activate %s: exit %d: %s%s", network, next, code, out, errs)
		}
		if code, out, errs := s.cli("activate", next); code != 0 {
			t.Fatalf("%s: fpmux activate %s: exit %d: %s%s", network, next, code, out, errs)
		}
		s.wantServedBy(c, next)
	}
	check("unix", strings.TrimPrefix(s.admin, "unix:"), "fpmux", "r2", "u1")

	// The same over TCP on loopback, with no token: the case a page can reach.
	addr := s.restartWithTCPAdmin("")
	check("tcp", addr, addr, "u1", "t1")
	if code, out, errs := s.cli("status"); code != 0 || !strings.Contains(out, "t1") {
		t.Fatalf("fpmux status over TCP: exit %d: %s%s", code, out, errs)
	}
	if !strings.Contains(s.logBuf.String(), "admin request refused") {
		t.Error("the refused requests were not logged")
	}
}

// portOf returns ":PORT" of a host:port, or "" for a name without one.
func portOf(hostport string) string {
	if _, port, err := net.SplitHostPort(hostport); err == nil {
		return ":" + port
	}
	return ""
}
