// This file owns preview routing: a request that names a release in
// X-Fpmux-Release and carries preview_token in X-Fpmux-Preview-Token is
// pinned to that release while it is ready, so a deploy script can try a
// release through the real web server before switching to it. fcgimux finds
// the headers (fcgimux.RouteHint) and drops them from what PHP sees; this
// file decides whether the hint is honoured.

package supervisor

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/fpmux/fpmux/fcgimux"
	"github.com/fpmux/fpmux/metrics"
	"github.com/fpmux/fpmux/pool"
)

var _ fcgimux.HintRouter = (*Supervisor)(nil)

// PinHint implements fcgimux.HintRouter for a request that names a release.
// With preview_token unset, or without the right token, the hint is
// ignored and the request is pinned as any other (Pin), so a client cannot
// reach a release that is not active without the token. With it, the
// request is pinned to the release it names if that one is ready (or
// active); otherwise it is refused with an error naming the release and
// its state, which the web server gets as a 503: a smoke test must never
// pass against another release than the one it asked for. A preview pin
// holds the release's pool like any other, so a release retired under it
// drains until the request ends.
func (s *Supervisor) PinHint(h fcgimux.RouteHint) (fcgimux.Pin, error) {
	// Read at each request, so a reload puts a new token in force.
	want := s.conf().PreviewToken
	switch {
	case want == "":
		s.m.Preview.WithLabelValues(metrics.PreviewOff).Inc()
		return s.Pin()
	case h.Token == nil || !tokenMatches(h.Token, want):
		s.m.Preview.WithLabelValues(metrics.PreviewBadToken).Inc()
		s.logBadPreviewToken(h)
		return s.Pin()
	case h.Conflict:
		s.m.Preview.WithLabelValues(metrics.PreviewConflict).Inc()
		return fcgimux.Pin{}, fmt.Errorf("preview refused: X-Fpmux-Release or X-Fpmux-Preview-Token came more than once with different values; send each once")
	}
	return s.pinPreview(h.Release)
}

// pinPreview pins a request to the release named id, if it is ready or
// active. It takes s.mu, briefly: unlike the active release, a ready one is
// found only in the registry, and the lock keeps its state and its pool's
// gate in step (Retire drains the pool under it). Preview requests are few.
func (s *Supervisor) pinPreview(id []byte) (fcgimux.Pin, error) {
	s.mu.Lock()
	r, ok := s.releases[string(id)]
	var state State
	if ok {
		state = r.state
		if (state == StateReady || state == StateActive) && r.pool.Enter() {
			s.mu.Unlock()
			r.requests.Add(1)
			outcome := metrics.PreviewRouted
			if state == StateActive {
				outcome = metrics.PreviewActive
			}
			s.m.Preview.WithLabelValues(outcome).Inc()
			return fcgimux.Pin{Release: r.id, Root: r.root, Backend: r.backend, Tracker: r}, nil
		}
	}
	s.mu.Unlock()
	s.m.Preview.WithLabelValues(metrics.PreviewNotReady).Inc()
	switch {
	case !ok:
		return fcgimux.Pin{}, fmt.Errorf("preview of release %s refused: no such release", quoteID(id))
	case state == StateReady || state == StateActive:
		return fcgimux.Pin{}, fmt.Errorf("preview of release %s refused: it is %s, but its pool takes no new requests now (draining or stopping)", r.id, state)
	}
	return fcgimux.Pin{}, fmt.Errorf("preview of release %s refused: it is %s; only a ready or active release can be previewed", r.id, state)
}

// quoteID returns a release id a client sent, for a message: as it is
// when it is a valid id, else quoted and cut to the longest valid length.
func quoteID(id []byte) string {
	if pool.ValidateID(string(id)) == nil {
		return string(id)
	}
	if len(id) > 64 {
		return fmt.Sprintf("%q...", id[:64])
	}
	return fmt.Sprintf("%q", id)
}

// badPreviewLogEvery bounds the lines logged for requests whose preview
// token is missing or wrong: anyone can send the headers, and the log must
// not be theirs to fill.
const badPreviewLogEvery = 10 * time.Second

// previewLog limits the lines logged by logBadPreviewToken.
type previewLog struct {
	last    atomic.Int64  // unix nanoseconds of the last line
	dropped atomic.Int64  // requests not logged since
	every   time.Duration // badPreviewLogEvery when 0; tests set it
}

// logBadPreviewToken logs, at most once per badPreviewLogEvery, a request
// that named a release without the right token: the release it named and
// why, never the token.
func (s *Supervisor) logBadPreviewToken(h fcgimux.RouteHint) {
	every := s.previewLog.every
	if every == 0 {
		every = badPreviewLogEvery
	}
	now := time.Now().UnixNano()
	last := s.previewLog.last.Load()
	if now-last < int64(every) || !s.previewLog.last.CompareAndSwap(last, now) {
		s.previewLog.dropped.Add(1)
		return
	}
	why := "the preview token does not match preview_token"
	if h.Token == nil {
		why = "no X-Fpmux-Preview-Token header"
	}
	s.log.Warn("preview hint ignored; the request goes to the active release", "release", quoteID(h.Release),
		"reason", why, "not_logged_since_last", s.previewLog.dropped.Swap(0))
}
