package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestFreshConnectionsAreWaitedForUntilTheirRequestIsHandled(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	fl := &freshListener{Listener: ln}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func() net.Conn {
		t.Helper()
		c, err := fl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// Sent a BEGIN_REQUEST's worth: fresh until the server reads again.
	w1 := dial()
	w1.Write(make([]byte, beginRequestLen))
	c1 := accept()
	// Silent: fresh until closed.
	dial()
	c2 := accept()
	// Gone: its read fails.
	w3 := dial()
	c3 := accept()
	w3.Close()
	ln.Close()

	if fl.wait(50 * time.Millisecond) {
		t.Fatal("no connection counted fresh right after accept")
	}
	buf := make([]byte, 64)
	if n, err := c1.Read(buf); n != beginRequestLen || err != nil {
		t.Fatalf("read %d %v", n, err)
	}
	if _, err := c3.Read(buf); err == nil {
		t.Fatal("read on a closed peer succeeded")
	}
	if fl.wait(50 * time.Millisecond) {
		t.Fatal("not waiting although the first connection's bytes were read but not handled")
	}
	// Reading again means the bytes read were handled.
	c1.(*freshConn).Conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	c1.Read(buf)
	if fl.wait(50 * time.Millisecond) {
		t.Fatal("not waiting for the silent connection")
	}
	c2.Close()
	if !fl.wait(5 * time.Second) {
		t.Fatal("still waiting with every connection handled or closed")
	}
}
