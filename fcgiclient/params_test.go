package fcgiclient

import "testing"

func TestGET(t *testing.T) {
	for _, c := range []struct {
		name string
		over map[string]string
		want map[string]string
	}{
		{"defaults", nil, map[string]string{
			"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
			"REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost", "SERVER_PORT": "80", "QUERY_STRING": "",
			"REQUEST_URI": "", "DOCUMENT_URI": "",
		}},
		{"uri from the script and its query", map[string]string{"SCRIPT_NAME": "/a.php", "QUERY_STRING": "x=1"}, map[string]string{
			"REQUEST_URI": "/a.php?x=1", "DOCUMENT_URI": "/a.php", "QUERY_STRING": "x=1",
		}},
		{"no query, no question mark", map[string]string{"SCRIPT_NAME": "/a.php"}, map[string]string{
			"REQUEST_URI": "/a.php",
		}},
		{"the caller's win", map[string]string{"SCRIPT_NAME": "/index.php", "REQUEST_URI": "/blog/3?a=b", "DOCUMENT_URI": "/index.php",
			"SERVER_SOFTWARE": "fpmux-bench", "HTTP_HOST": "example.test"}, map[string]string{
			"REQUEST_URI": "/blog/3?a=b", "DOCUMENT_URI": "/index.php", "SERVER_SOFTWARE": "fpmux-bench", "HTTP_HOST": "example.test",
		}},
		{"an empty REQUEST_URI given stays empty", map[string]string{"SCRIPT_NAME": "/a.php", "REQUEST_URI": ""}, map[string]string{
			"REQUEST_URI": "",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := GET(c.over)
			for k, v := range c.want {
				if got, ok := p[k]; !ok || got != v {
					t.Errorf("%s = %q (set: %v), want %q", k, got, ok, v)
				}
			}
		})
	}
}

func TestPage(t *testing.T) {
	p := Page("/fpmux-status-x", "json&full")
	for k, v := range map[string]string{
		"SCRIPT_NAME": "/fpmux-status-x", "SCRIPT_FILENAME": "/fpmux-status-x", "QUERY_STRING": "json&full",
		"REQUEST_URI": "/fpmux-status-x?json&full", "REQUEST_METHOD": "GET",
	} {
		if p[k] != v {
			t.Errorf("%s = %q, want %q", k, p[k], v)
		}
	}
}
