package main

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// unbufferedLocation serves /unbuffered/x.php as x.php with nginx's
// fastcgi_request_buffering off: nginx sends the params at once and the
// body as it arrives, so even a small body comes after the params.
const unbufferedLocation = `
        client_max_body_size 16m;
        location ~ ^/unbuffered(/.+\.php)$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$1;
            fastcgi_pass fpmux;
            fastcgi_keep_conn on;
            fastcgi_request_buffering off;
            fastcgi_read_timeout 120s;
        }`

// TestKeptConnectionPOSTsToExitingChildrenFailNothing runs php-fpm with
// pm.max_requests = 2, so every other request is a child's last: php-fpm
// sends END_REQUEST, shuts its side of the kept connection for writing and
// throws away whatever arrives on it until fpmux closes it. Through nginx,
// keep-alive on both hops, POSTs with bodies of 3 B, 100 KB and 8 MB,
// buffered by nginx and not, from clients in parallel: none may fail, and
// each body must reach PHP whole.
func TestKeptConnectionPOSTsToExitingChildrenFailNothing(t *testing.T) {
	s := newStack(t, stackOptions{
		pool:        map[string]string{"pm.max_requests": "2"},
		ini:         map[string]string{"post_max_size": "16M"},
		nginxServer: unbufferedLocation,
	})
	s.deploy("r1")
	sizes := []int{3, 100 << 10, 8 << 20}
	bodies := map[int][]byte{}
	rng := rand.New(rand.NewPCG(11, 4))
	for _, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		bodies[n] = b
	}
	const clients, rounds = 3, 10
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	deadline := time.Now().Add(4 * time.Minute)
	// client sends its rounds of POSTs on one keep-alive HTTP client.
	client := func(i int) {
		defer wg.Done()
		c := newHTTPClient()
		defer c.CloseIdleConnections()
		for round := range rounds {
			for _, prefix := range []string{"", "/unbuffered"} {
				for _, n := range sizes {
					if n > 1<<20 && (round+i)%3 != 0 || time.Now().After(deadline) {
						continue // the 8 MB bodies every third round
					}
					sent.Add(1)
					if err := postBody(c, s.nginxURL+prefix+"/upload.php", bodies[n]); err != nil {
						if failed.Add(1) <= 5 {
							t.Errorf("client %d, round %d, %d B, %q: %v", i, round, n, prefix, err)
						}
					}
				}
			}
		}
	}
	wg.Add(clients)
	for i := range clients {
		go client(i)
	}
	wg.Wait()
	t.Logf("pm.max_requests=2: %d POSTs, %d failed", sent.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d POSTs failed", n, sent.Load())
	}
	if got := s.metric(`fpmux_requests_total{code="502",release="r1"}`); got > 0 {
		t.Errorf("fpmux counted %v 502s", got)
	}
}

// postBody POSTs body and checks that PHP read all of it.
func postBody(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	want := fmt.Sprintf("len=%d md5=%x", len(body), md5.Sum(body))
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != want {
		return fmt.Errorf("%d %q, want 200 %q", resp.StatusCode, b, want)
	}
	return nil
}
