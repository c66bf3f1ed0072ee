// params.go owns the CGI params of the requests fpmux makes of its own
// (warm-up, health checks, php-fpm's ping and status page) and the bench's
// and tests' well-formed ones: one set of what a web server sends, so that
// PHP sees these requests as it sees the web server's.

package fcgiclient

// GET returns the CGI params of a GET request as nginx's stock
// fastcgi_params send them from a client on 127.0.0.1 to a server named
// localhost on port 80, with over's params on top (SCRIPT_NAME,
// SCRIPT_FILENAME, DOCUMENT_ROOT, QUERY_STRING, HTTP_* ...: the caller's
// win). REQUEST_URI, when over does not give it, is SCRIPT_NAME with
// "?QUERY_STRING" when there is a query, and DOCUMENT_URI is SCRIPT_NAME,
// as nginx's $document_uri is for a request to the script itself.
func GET(over map[string]string) map[string]string {
	p := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "fpmux",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"REQUEST_METHOD":    "GET",
		"REQUEST_SCHEME":    "http",
		"QUERY_STRING":      "",
		"SERVER_NAME":       "localhost",
		"SERVER_ADDR":       "127.0.0.1",
		"SERVER_PORT":       "80",
		"REMOTE_ADDR":       "127.0.0.1",
		"REMOTE_PORT":       "0",
		"CONTENT_TYPE":      "",
		"CONTENT_LENGTH":    "",
		"HTTP_HOST":         "localhost",
	}
	for k, v := range over {
		p[k] = v
	}
	if _, ok := over["REQUEST_URI"]; !ok {
		uri := p["SCRIPT_NAME"]
		if q := p["QUERY_STRING"]; q != "" {
			uri += "?" + q
		}
		p["REQUEST_URI"] = uri
	}
	if _, ok := over["DOCUMENT_URI"]; !ok {
		p["DOCUMENT_URI"] = p["SCRIPT_NAME"]
	}
	return p
}

// Page returns the params of a GET of one of php-fpm's own pages, its
// ping.path or pm.status_path: php-fpm answers them itself, without PHP,
// when SCRIPT_NAME is the page's path (SCRIPT_FILENAME too: a pool's
// security.limit_extensions check reads it first).
func Page(path, query string) map[string]string {
	return GET(map[string]string{"SCRIPT_NAME": path, "SCRIPT_FILENAME": path, "QUERY_STRING": query})
}
