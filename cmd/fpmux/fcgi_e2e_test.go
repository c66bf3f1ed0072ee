// This file owns the tests' well-formed FastCGI requests straight to
// fpmux's socket, as a web server would send them, through fcgiclient.
// Malformed input has its raw record writer in badinput_e2e_test.go.

package main

import (
	"context"
	"testing"
	"time"

	"github.com/fpmux/fpmux/fcgiclient"
)

// nginxParams are the params nginx's fastcgi_params sends for script, with
// SCRIPT_FILENAME set to filename and extra pairs after them, as name,
// value, name, value...
func (s *stack) nginxParams(script, filename string, extra ...string) []string {
	kv := []string{
		"QUERY_STRING", "", "REQUEST_METHOD", "GET", "CONTENT_TYPE", "", "CONTENT_LENGTH", "",
		"SCRIPT_NAME", script, "REQUEST_URI", script, "DOCUMENT_URI", script,
		"DOCUMENT_ROOT", s.docroot, "SERVER_PROTOCOL", "HTTP/1.1", "REQUEST_SCHEME", "http",
		"GATEWAY_INTERFACE", "CGI/1.1", "SERVER_SOFTWARE", "nginx", "REMOTE_ADDR", "127.0.0.1",
		"REMOTE_PORT", "40000", "SERVER_ADDR", "127.0.0.1", "SERVER_PORT", "80", "SERVER_NAME", "localhost",
		"REDIRECT_STATUS", "200", "SCRIPT_FILENAME", filename, "HTTP_HOST", "localhost",
	}
	return append(kv, extra...)
}

// fcgiGet sends one request made of the pairs kv (name, value, ...; of two
// pairs of one name the later is sent) on a new connection to fpmux's
// FastCGI socket and returns the answer. A request fpmux neither answers
// nor closes within 20 s fails the test, as does one it closes unanswered.
func (s *stack) fcgiGet(t *testing.T, kv []string) *fcgiclient.Response {
	t.Helper()
	params := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		params[kv[i]] = kv[i+1]
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resp, err := fcgiclient.Fetch(ctx, "unix", s.sock, fcgiclient.Request{Params: params})
	if err != nil {
		t.Fatalf("request %s to fpmux: %v", params["REQUEST_URI"], err)
	}
	return resp
}
